// CallbackGate: lets one user of a shared asynchronous facility (a client
// whose callbacks outlive the user, such as the AsyncParticipantClient both
// drivers share) stop receiving callbacks before it is destroyed.
//
//   gate_.Wrap(fn) returns a callable that runs fn unless Close() was called.
//   Close() lets callbacks already running finish, and no wrapped callback
//   runs fn afterwards: the owner may then be destroyed while calls it made
//   are still outstanding (their late completions are dropped).
//
// Thread-safety: Wrap, Close and the wrapped callables may be used from any
// thread. Never call Close() from inside a wrapped callback of the same gate
// (it would wait for itself).
#pragma once

#include <memory>
#include <mutex>
#include <shared_mutex>
#include <utility>

namespace txc {

class CallbackGate {
 public:
  CallbackGate() : state_(std::make_shared<State>()) {}

  template <typename Fn>
  auto Wrap(Fn fn) const {
    return [state = state_, fn = std::move(fn)](auto&&... args) mutable {
      std::shared_lock<std::shared_mutex> lock(state->mu);
      if (state->closed) return;
      fn(std::forward<decltype(args)>(args)...);
    };
  }

  void Close() {
    std::unique_lock<std::shared_mutex> lock(state_->mu);
    state_->closed = true;
  }

 private:
  struct State {
    std::shared_mutex mu;
    bool closed = false;
  };
  std::shared_ptr<State> state_;
};

}  // namespace txc
