// FunctionRef: a reference to a callable, for a parameter that is called during the call only (as
// C++26's std::function_ref). Two pointers; binding it allocates nothing and a call is one
// indirect call, where a `const std::function&` parameter builds a std::function around each
// lambda passed (libstdc++ allocates one holding more than two pointers) and calls through two.
// Used on the hot read paths (a sorted set's searches and range walks: one call per member
// compared or served).
//
// Lifetime: it does not own the callable. Bind it to a parameter and call it before the function
// returns; never store one beyond the call that received it. Thread: as the callable.
#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace keg::store {

template <class Signature>
class FunctionRef;

template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::remove_cvref_t<F>, FunctionRef> &&
                                              std::is_invocable_r_v<R, F&, Args...>>>
  FunctionRef(F&& f) noexcept  // NOLINT: implicit, as std::function
      : callable_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* callable, Args... args) -> R {
          auto& fn = *static_cast<std::add_pointer_t<std::remove_reference_t<F>>>(callable);
          if constexpr (std::is_void_v<R>) {
            std::invoke(fn, std::forward<Args>(args)...);
          } else {
            return std::invoke(fn, std::forward<Args>(args)...);
          }
        }) {}

  R operator()(Args... args) const { return call_(callable_, std::forward<Args>(args)...); }

 private:
  void* callable_;
  R (*call_)(void*, Args...);
};

}  // namespace keg::store
