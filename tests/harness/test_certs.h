// TestCa: a throwaway certificate authority and certificates made with the
// `openssl` CLI in a temporary directory that is removed with the object.
//
//   auto ca = txc::testing::TestCa::Create("test-ca");
//   ASSERT_TRUE(ca.ok()) << ca.status();
//   auto server = (*ca)->Issue("server", "coordinator", {"DNS:localhost", "IP:127.0.0.1"});
//   auto client = (*ca)->Issue("client", "order-service");
//   auto old = (*ca)->Issue("old", "order-service", {}, /*expired=*/true);
//   TlsOptions tls = (*ca)->Options(*server);     // cert, key, ca_file = this CA
//   (*ca)->Revoke(*client);                        // openssl ca -revoke
//   (*ca)->WriteCrl(dir + "/crl.pem");             // openssl ca -gencrl: lists client
//
// A second TestCa is an unrelated CA (its certificates do not verify against
// the first). Keys are EC P-256 (fast to make and to handshake). Certificates
// are valid from now for two days, or (expired) ended a day before they
// started. Thread-safety: one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tls.h"
#include "tests/harness/process.h"

namespace txc {
namespace testing {

class TestCa {
 public:
  struct Issued {
    std::string cert_file;  // PEM certificate
    std::string key_file;   // PEM private key
  };

  // Makes the CA (subject CN=`name`). kInternal with openssl's output when it fails.
  static Result<std::unique_ptr<TestCa>> Create(const std::string& name = "txc-test-ca");

  // Issues a certificate with subject CN=`common_name` and the given SANs
  // ("DNS:localhost", "IP:127.0.0.1", "URI:spiffe://txc/coordinator",
  // "email:a@b"), good for both server and client authentication. Files are
  // "<file_stem>.pem" and "<file_stem>.key" in dir().
  Result<Issued> Issue(const std::string& file_stem, const std::string& common_name,
                       const std::vector<std::string>& sans = {}, bool expired = false);

  // A server certificate for this machine's loopback (SANs localhost and 127.0.0.1).
  Result<Issued> IssueLoopbackServer(const std::string& file_stem,
                                     const std::string& common_name = "localhost") {
    return Issue(file_stem, common_name, {"DNS:localhost", "IP:127.0.0.1"});
  }

  // An intermediate CA (subject CN=`name`) signed by this CA, in a directory of
  // its own: its Issue() writes the leaf followed by the intermediate into
  // cert_file (the chain a peer presents), its ca_file() is its own
  // certificate, its Revoke()/WriteCrl() are its own CRL. `as_issued`, when
  // set, receives the intermediate as a certificate of this CA (for Revoke()).
  Result<std::unique_ptr<TestCa>> IssueIntermediate(const std::string& name,
                                                    Issued* as_issued = nullptr);
  // Marks `issued` (a certificate of this CA) revoked in the CA's database
  // (`openssl ca -revoke`); the next WriteCrl lists it. kInternal with
  // openssl's output when it fails.
  Status Revoke(const Issued& issued);
  // Writes a PEM CRL of this CA listing every certificate revoked so far
  // (`openssl ca -gencrl`, valid for two days) to `path`: written next to it
  // first, then renamed over it, so a reader never sees half a file.
  Status WriteCrl(const std::string& path);

  // TlsOptions presenting `issued` and trusting this CA.
  TlsOptions Options(const Issued& issued) const {
    TlsOptions o;
    o.cert_file = issued.cert_file;
    o.key_file = issued.key_file;
    o.ca_file = ca_file_;
    return o;
  }

  const std::string& ca_file() const { return ca_file_; }
  const std::string& dir() const { return dir_.path(); }

 private:
  TestCa() : dir_("txc-ca-") {}
  Status Openssl(const std::vector<std::string>& args);
  // The `openssl ca` configuration and database (made on first use).
  Result<std::string> CaConfig();

  TempDir dir_;
  std::string ca_file_;
  std::string ca_key_;
  bool intermediate_ = false;  // Issue() appends ca_file_ to each leaf's cert_file
  int serial_ = 1;
  std::string ca_config_;  // empty until CaConfig() made it
  int crl_serial_ = 0;     // names the temporary file of each WriteCrl
};

}  // namespace testing
}  // namespace txc
