#include "txc/participant/txn_resources.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>

#include "common/backoff.h"
#include "txc/participant/context.h"

namespace txc {
namespace participant {

namespace {

std::string Key(const std::string& gtid, const std::string& name) {
  std::string key = gtid;
  key.push_back('\0');
  key += name;
  return key;
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 48) return false;
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

}  // namespace

Outcome TxnResource::CommitOnePhase(const BranchContext& ctx) {
  switch (Prepare(ctx)) {
    case Vote::kPrepared: Commit(ctx); return Outcome::kCommit;
    case Vote::kReadOnly: return Outcome::kCommit;
    case Vote::kAbort: return Outcome::kAbort;
  }
  return Outcome::kAbort;
}

// Hands the coordinator's calls to the resource the branch names.
class TxnResources::Dispatcher : public Participant {
 public:
  explicit Dispatcher(TxnResources* owner) : owner_(owner) {}

  Vote Prepare(const BranchContext& ctx) override { return Get(ctx)->Prepare(ctx); }
  Outcome CommitOnePhase(const BranchContext& ctx) override {
    const Outcome outcome = Get(ctx)->CommitOnePhase(ctx);
    owner_->Forget(ctx.gtid, ctx.resource);
    return outcome;
  }
  void Commit(const BranchContext& ctx) override {
    Get(ctx)->Commit(ctx);
    owner_->Forget(ctx.gtid, ctx.resource);
  }
  void Abort(const BranchContext& ctx) override {
    auto resource = owner_->Find(ctx.resource);
    if (resource == nullptr) {
      LOG(WARNING) << "gtid=" << ctx.gtid << " abort for unknown resource '" << ctx.resource
                   << "': nothing held";
      return;
    }
    resource->Abort(ctx);
    owner_->Forget(ctx.gtid, ctx.resource);
  }
  std::vector<PreparedBranch> Recover() override {
    std::vector<std::pair<std::string, std::shared_ptr<TxnResource>>> all;
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      all.assign(owner_->resources_.begin(), owner_->resources_.end());
    }
    std::vector<PreparedBranch> out;
    for (auto& [name, resource] : all) {
      for (PreparedBranch b : resource->Recover()) {
        b.resource = name;
        out.push_back(std::move(b));
      }
    }
    return out;
  }

 private:
  std::shared_ptr<TxnResource> Get(const BranchContext& ctx) {
    auto resource = owner_->Find(ctx.resource);
    if (resource == nullptr) {
      throw std::runtime_error("gtid=" + ctx.gtid + ": no resource named '" + ctx.resource + "'");
    }
    return resource;
  }
  TxnResources* owner_;
};

TxnResources::TxnResources(TxnResourcesOptions options)
    : options_(std::move(options)), dispatcher_(std::make_shared<Dispatcher>(this)) {}

TxnResources::~TxnResources() = default;

Status TxnResources::Register(const std::string& name, std::shared_ptr<TxnResource> resource) {
  if (!ValidName(name)) {
    return Status::InvalidArgument("resource name must be 1..48 of [A-Za-z0-9_.-]: '" + name + "'");
  }
  if (resource == nullptr) return Status::InvalidArgument("resource " + name + " is null");
  std::lock_guard<std::mutex> lock(mu_);
  if (!resources_.emplace(name, std::move(resource)).second) {
    return Status::AlreadyExists("resource " + name + " already registered");
  }
  return Status::Ok();
}

std::shared_ptr<Participant> TxnResources::participant() { return dispatcher_; }

Status TxnResources::SetEndpoint(const std::string& endpoint) {
  TXC_RETURN_IF_ERROR(ParseEndpoint(endpoint).status());
  std::lock_guard<std::mutex> lock(mu_);
  endpoint_ = endpoint;
  return Status::Ok();
}

std::string TxnResources::BranchIdFor(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string endpoint = endpoint_;
  for (char& c : endpoint) {
    if (c == ':') c = '_';
  }
  return name + "@" + endpoint;
}

std::shared_ptr<TxnResource> TxnResources::Find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = resources_.find(name);
  return it == resources_.end() ? nullptr : it->second;
}

void TxnResources::Forget(const std::string& gtid, const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  enlistments_.erase(Key(gtid, name));
}

Result<std::shared_ptr<CoordinatorClient>> TxnResources::ClientFor(
    const std::vector<std::string>& endpoints) {
  std::string key;
  for (const auto& e : endpoints) key += e + ",";
  std::lock_guard<std::mutex> lock(mu_);
  auto it = clients_.find(key);
  if (it != clients_.end()) return it->second;
  if (clients_.size() >= kMaxCoordinatorClients) clients_.clear();
  CoordinatorClientOptions o = options_.coordinator_client;
  o.endpoints = endpoints;
  TXC_ASSIGN_OR_RETURN(std::unique_ptr<CoordinatorClient> created, CoordinatorClient::Create(o));
  std::shared_ptr<CoordinatorClient> client = std::move(created);
  clients_[key] = client;
  return client;
}

Result<BranchContext> TxnResources::Join(const std::string& name) {
  const wire::TxnContext* context = CurrentTxnContext();
  if (context == nullptr) return Status::NotFound("no current transaction context");
  if (!options_.allowed_coordinators.empty()) {
    for (const auto& endpoint : context->coordinators) {
      if (std::find(options_.allowed_coordinators.begin(), options_.allowed_coordinators.end(),
                    endpoint) == options_.allowed_coordinators.end()) {
        return Status::InvalidArgument("gtid=" + context->gtid + ": coordinator " + endpoint +
                                       " is not an allowed coordinator");
      }
    }
  }
  BranchContext branch;
  branch.gtid = context->gtid;
  branch.resource = name;
  branch.deadline_unix_ms = context->deadline_unix_ms;
  branch.coordinators = context->coordinators;
  const std::string key = Key(context->gtid, name);
  std::shared_future<Status> waiting;
  std::shared_ptr<std::promise<Status>> mine;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (resources_.count(name) == 0) return Status::NotFound("no resource named '" + name + "'");
    if (endpoint_.empty()) {
      return Status::InvalidArgument("TxnResources: SetEndpoint() was not called");
    }
    auto it = enlistments_.find(key);
    if (it != enlistments_.end()) {
      waiting = it->second.done;
    } else {
      // Forget enlistments of transactions long past their deadline.
      const int64_t now = NowUnixMs();
      for (auto e = enlistments_.begin(); e != enlistments_.end();) {
        if (e->second.deadline_unix_ms + options_.forget_after_deadline_ms < now) {
          e = enlistments_.erase(e);
        } else {
          ++e;
        }
      }
      mine = std::make_shared<std::promise<Status>>();
      enlistments_[key] = Enlistment{mine->get_future().share(), context->deadline_unix_ms};
    }
  }
  branch.branch_id = BranchIdFor(name);
  if (waiting.valid()) {
    if (waiting.wait_for(std::chrono::milliseconds(options_.enlist_wait_ms)) !=
        std::future_status::ready) {
      return Status::Timeout("gtid=" + branch.gtid + ": waited " +
                             std::to_string(options_.enlist_wait_ms) + " ms for the enlist of " +
                             name);
    }
    Status s = waiting.get();
    if (!s.ok()) return s;
    return branch;
  }

  Status s;
  auto client = ClientFor(context->coordinators);
  if (!client.ok()) {
    s = client.status();
  } else {
    wire::EnlistRequest request;
    request.gtid = branch.gtid;
    request.branch.branch_id = branch.branch_id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      request.branch.endpoint = endpoint_;
    }
    request.branch.resource = name;
    enlist_calls_.fetch_add(1);
    s = (*client)->Enlist(request);
  }
  mine->set_value(s);
  if (!s.ok()) {
    LOG(ERROR) << "gtid=" << branch.gtid << " enlist of resource " << name << " failed: " << s;
    Forget(branch.gtid, name);
    return s;
  }
  VLOG(1) << "gtid=" << branch.gtid << " resource " << name << " enlisted as branch "
          << branch.branch_id;
  return branch;
}

Status TxnResources::Run(const std::string& name,
                         const std::function<Status(const BranchContext&)>& fn) {
  if (CurrentTxnContext() == nullptr) {
    BranchContext none;
    none.resource = name;
    return fn(none);
  }
  TXC_ASSIGN_OR_RETURN(BranchContext branch, Join(name));
  return fn(branch);
}

}  // namespace participant
}  // namespace txc
