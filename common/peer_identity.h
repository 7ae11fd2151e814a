// PeerIdentity: who is calling, for the handler serving the call.
//
// ThriftServer serves each connection on its own thread and sets the identity
// of that connection's peer before every call: its address always, and, on a
// mutual-TLS connection, the verified client certificate's subject CN and
// subject alternative names. Authorization (roles, "only a coordinator may
// call this participant") reads it with CurrentPeerIdentity().
//
// Thread-safety: the identity is thread-local; each serving thread sees its own.
#pragma once

#include <string>
#include <vector>

namespace txc {

struct PeerIdentity {
  std::string address = "unknown";  // "host:port" of the peer
  // True only when the peer presented a client certificate that the server
  // verified against its CA bundle (mutual TLS). Then common_name and sans
  // hold that certificate's subject CN and its DNS/URI/email SAN entries.
  bool authenticated = false;
  std::string common_name;
  std::vector<std::string> sans;

  // The names a policy may match: the CN first, then every SAN. Empty when
  // not authenticated.
  std::vector<std::string> Names() const;
  // "CN=<cn> from <address>", or "unauthenticated peer <address>": for logs
  // and error messages.
  std::string Describe() const;
};

// The identity of the peer whose call this thread is serving inside a
// ThriftServer handler; an unauthenticated "unknown" peer elsewhere.
const PeerIdentity& CurrentPeerIdentity();

// Makes `identity` current for this thread until destroyed, then restores the
// previous one. ThriftServer uses it per call; tests use it to call a handler
// as a given peer.
class ScopedPeerIdentity {
 public:
  explicit ScopedPeerIdentity(PeerIdentity identity);
  ~ScopedPeerIdentity();
  ScopedPeerIdentity(const ScopedPeerIdentity&) = delete;
  ScopedPeerIdentity& operator=(const ScopedPeerIdentity&) = delete;

 private:
  PeerIdentity previous_;
};

// Sets this thread's identity without restoring it (ThriftServer: a serving
// thread belongs to one connection).
void SetCurrentPeerIdentity(PeerIdentity identity);

}  // namespace txc
