#include "tests/harness/test_certs.h"

#include <fstream>

namespace txc {
namespace testing {

namespace {
constexpr int64_t kOpensslTimeoutMs = 30000;
const std::vector<std::string> kEcKey = {"-newkey", "ec", "-pkeyopt",
                                         "ec_paramgen_curve:prime256v1", "-nodes"};
}  // namespace

Status TestCa::Openssl(const std::vector<std::string>& args) {
  ChildProcess::Options o;
  o.argv = {"openssl"};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.cwd = dir_.path();
  o.log_path = dir_.Child("openssl.log");
  return RunCommand(o, kOpensslTimeoutMs);
}

Result<std::unique_ptr<TestCa>> TestCa::Create(const std::string& name) {
  std::unique_ptr<TestCa> ca(new TestCa());
  ca->ca_file_ = ca->dir_.Child("ca.pem");
  ca->ca_key_ = ca->dir_.Child("ca.key");
  std::vector<std::string> args = {"req", "-x509"};
  args.insert(args.end(), kEcKey.begin(), kEcKey.end());
  args.insert(args.end(),
              {"-keyout", ca->ca_key_, "-out", ca->ca_file_, "-days", "2", "-subj", "/CN=" + name});
  Status made = ca->Openssl(args);
  if (!made.ok()) return made;
  return ca;
}

Result<TestCa::Issued> TestCa::Issue(const std::string& file_stem, const std::string& common_name,
                                     const std::vector<std::string>& sans, bool expired) {
  Issued issued{dir_.Child(file_stem + ".pem"), dir_.Child(file_stem + ".key")};
  const std::string csr = dir_.Child(file_stem + ".csr");
  const std::string ext = dir_.Child(file_stem + ".ext");
  {
    std::ofstream out(ext);
    out << "basicConstraints=CA:FALSE\n"
        << "keyUsage=critical,digitalSignature,keyEncipherment\n"
        << "extendedKeyUsage=serverAuth,clientAuth\n";
    if (!sans.empty()) {
      out << "subjectAltName=";
      for (size_t i = 0; i < sans.size(); ++i) out << (i ? "," : "") << sans[i];
      out << "\n";
    }
    if (!out) return Status::Internal("cannot write " + ext);
  }
  std::vector<std::string> req = {"req", "-new"};
  req.insert(req.end(), kEcKey.begin(), kEcKey.end());
  req.insert(req.end(), {"-keyout", issued.key_file, "-out", csr, "-subj", "/CN=" + common_name});
  Status s = Openssl(req);
  if (!s.ok()) return s;
  // -days -1: notAfter a day before notBefore, so the certificate is expired.
  s = Openssl({"x509", "-req", "-in", csr, "-CA", ca_file_, "-CAkey", ca_key_, "-set_serial",
               std::to_string(serial_++), "-out", issued.cert_file, "-days", expired ? "-1" : "2",
               "-extfile", ext});
  if (!s.ok()) return s;
  return issued;
}

}  // namespace testing
}  // namespace txc
