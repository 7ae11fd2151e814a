#include "tests/harness/test_certs.h"

#include <filesystem>
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
  if (intermediate_) {
    std::ifstream ca(ca_file_);
    std::ofstream out(issued.cert_file, std::ios::app);
    out << ca.rdbuf();
    if (!ca || !out)
      return Status::Internal("cannot append " + ca_file_ + " to " + issued.cert_file);
  }
  return issued;
}

Result<std::unique_ptr<TestCa>> TestCa::IssueIntermediate(const std::string& name,
                                                          Issued* as_issued) {
  std::unique_ptr<TestCa> sub(new TestCa());
  sub->ca_file_ = sub->dir_.Child("ca.pem");
  sub->ca_key_ = sub->dir_.Child("ca.key");
  sub->intermediate_ = true;
  const std::string csr = sub->dir_.Child("ca.csr");
  const std::string ext = dir_.Child(name + "-ca.ext");
  {
    std::ofstream out(ext);
    out << "basicConstraints=critical,CA:TRUE\n"
        << "keyUsage=critical,keyCertSign,cRLSign\n";
    if (!out) return Status::Internal("cannot write " + ext);
  }
  std::vector<std::string> req = {"req", "-new"};
  req.insert(req.end(), kEcKey.begin(), kEcKey.end());
  req.insert(req.end(), {"-keyout", sub->ca_key_, "-out", csr, "-subj", "/CN=" + name});
  Status s = Openssl(req);
  if (!s.ok()) return s;
  s = Openssl({"x509", "-req", "-in", csr, "-CA", ca_file_, "-CAkey", ca_key_, "-set_serial",
               std::to_string(serial_++), "-out", sub->ca_file_, "-days", "2", "-extfile", ext});
  if (!s.ok()) return s;
  if (as_issued != nullptr) *as_issued = Issued{sub->ca_file_, sub->ca_key_};
  return sub;
}

Result<std::string> TestCa::CaConfig() {
  if (!ca_config_.empty()) return ca_config_;
  const std::string config = dir_.Child("ca.cnf");
  {
    std::ofstream index(dir_.Child("index.txt"));  // the CA database: empty
    std::ofstream number(dir_.Child("crlnumber"));
    number << "01\n";
    std::ofstream out(config);
    // unique_subject = no: tests issue several certificates with one CN.
    out << "[ ca ]\ndefault_ca = test_ca\n[ test_ca ]\n"
        << "database = " << dir_.Child("index.txt") << "\n"
        << "crlnumber = " << dir_.Child("crlnumber") << "\n"
        << "certificate = " << ca_file_ << "\n"
        << "private_key = " << ca_key_ << "\n"
        << "default_md = sha256\nunique_subject = no\n";
    if (!index || !number || !out) return Status::Internal("cannot write the CA database files");
  }
  ca_config_ = config;
  return ca_config_;
}

Status TestCa::Revoke(const Issued& issued) {
  TXC_ASSIGN_OR_RETURN(const std::string config, CaConfig());
  return Openssl({"ca", "-config", config, "-revoke", issued.cert_file});
}

Status TestCa::WriteCrl(const std::string& path) {
  TXC_ASSIGN_OR_RETURN(const std::string config, CaConfig());
  const std::string temporary = path + ".tmp" + std::to_string(++crl_serial_);
  Status s = Openssl({"ca", "-config", config, "-gencrl", "-crldays", "2", "-out", temporary});
  if (!s.ok()) return s;
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  if (ec)
    return Status::Internal("cannot rename " + temporary + " to " + path + ": " + ec.message());
  return Status::Ok();
}

}  // namespace testing
}  // namespace txc
