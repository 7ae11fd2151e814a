#include "common/peer_identity.h"

#include <utility>

namespace txc {

namespace {
thread_local PeerIdentity current_identity;
}  // namespace

std::vector<std::string> PeerIdentity::Names() const {
  std::vector<std::string> names;
  if (!authenticated) return names;
  if (!common_name.empty()) names.push_back(common_name);
  names.insert(names.end(), sans.begin(), sans.end());
  return names;
}

std::string PeerIdentity::Describe() const {
  if (!authenticated) return "unauthenticated peer " + address;
  return "CN=" + common_name + " from " + address;
}

const PeerIdentity& CurrentPeerIdentity() { return current_identity; }

void SetCurrentPeerIdentity(PeerIdentity identity) { current_identity = std::move(identity); }

ScopedPeerIdentity::ScopedPeerIdentity(PeerIdentity identity)
    : previous_(std::move(current_identity)) {
  current_identity = std::move(identity);
}

ScopedPeerIdentity::~ScopedPeerIdentity() { current_identity = std::move(previous_); }

}  // namespace txc
