// InlineFunction: std::function's interface, with room for the closures keg's commands make.
//
// libstdc++'s std::function keeps a callable in place only when it is trivially copyable and at
// most two pointers big; any lambda holding a std::shared_ptr or a std::string is allocated on the
// heap. Every queued write holds two such closures (its function on the writer, its finisher on
// the I/O thread), so at a million writes a second the allocations were a measurable part of a
// pipelined HSET. InlineFunction keeps any callable of up to `kInlineBytes` whose move cannot
// throw in its own storage, and others on the heap, as std::function does.
//
// Copyable (copies the callable), movable (a moved-from InlineFunction is empty), callable through
// a const reference like std::function (the callable itself is not const: a `mutable` lambda may
// change its state). Calling an empty one is undefined (std::function throws). Thread: as the
// callable; no synchronisation of its own.
#pragma once

#include <cstddef>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

namespace keg::store {

template <class Signature, size_t kInlineBytes = 48>
class InlineFunction;

template <class R, class... Args, size_t kInlineBytes>
class InlineFunction<R(Args...), kInlineBytes> {
 public:
  InlineFunction() noexcept = default;
  InlineFunction(std::nullptr_t) noexcept {}  // NOLINT: as std::function

  template <class F, class D = std::decay_t<F>,
            class = std::enable_if_t<!std::is_same_v<D, InlineFunction> && std::is_invocable_r_v<R, D&, Args...>>>
  InlineFunction(F&& f) {  // NOLINT: implicit, as std::function
    if constexpr (kFitsInline<D>) {
      ::new (static_cast<void*>(storage_)) D(std::forward<F>(f));
      ops_ = &kInlineOps<D>;
    } else {
      *reinterpret_cast<D**>(storage_) = new D(std::forward<F>(f));
      ops_ = &kHeapOps<D>;
    }
  }

  InlineFunction(const InlineFunction& o) : ops_(nullptr) {
    if (o.ops_ != nullptr) {
      o.ops_->copy(o.storage_, storage_);
      ops_ = o.ops_;
    }
  }
  InlineFunction(InlineFunction&& o) noexcept : ops_(o.ops_) {
    if (ops_ != nullptr) {
      ops_->move(o.storage_, storage_);
      o.ops_ = nullptr;
    }
  }
  InlineFunction& operator=(const InlineFunction& o) {
    if (this != &o) {
      InlineFunction copy(o);
      *this = std::move(copy);
    }
    return *this;
  }
  InlineFunction& operator=(InlineFunction&& o) noexcept {
    if (this != &o) {
      Reset();
      if (o.ops_ != nullptr) {
        o.ops_->move(o.storage_, storage_);
        ops_ = o.ops_;
        o.ops_ = nullptr;
      }
    }
    return *this;
  }
  InlineFunction& operator=(std::nullptr_t) noexcept {
    Reset();
    return *this;
  }
  ~InlineFunction() { Reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }
  friend bool operator==(const InlineFunction& f, std::nullptr_t) noexcept { return f.ops_ == nullptr; }

  R operator()(Args... args) const {
    return ops_->invoke(const_cast<unsigned char*>(storage_), std::forward<Args>(args)...);
  }

 private:
  struct Ops {
    R (*invoke)(void* self, Args&&... args);
    void (*copy)(const void* from, void* to);
    void (*move)(void* from, void* to) noexcept;  // leaves `from` destroyed
    void (*destroy)(void* self) noexcept;
  };

  template <class D>
  static constexpr bool kFitsInline = sizeof(D) <= kInlineBytes && alignof(D) <= alignof(std::max_align_t) &&
                                      std::is_nothrow_move_constructible_v<D>;

  template <class D>
  static constexpr Ops kInlineOps = {
      [](void* self, Args&&... args) -> R { return std::invoke(*static_cast<D*>(self), std::forward<Args>(args)...); },
      [](const void* from, void* to) { ::new (to) D(*static_cast<const D*>(from)); },
      [](void* from, void* to) noexcept {
        ::new (to) D(std::move(*static_cast<D*>(from)));
        static_cast<D*>(from)->~D();
      },
      [](void* self) noexcept { static_cast<D*>(self)->~D(); },
  };

  template <class D>
  static constexpr Ops kHeapOps = {
      [](void* self, Args&&... args) -> R { return std::invoke(**static_cast<D**>(self), std::forward<Args>(args)...); },
      [](const void* from, void* to) { *static_cast<D**>(to) = new D(**static_cast<D* const*>(from)); },
      [](void* from, void* to) noexcept { *static_cast<D**>(to) = *static_cast<D**>(from); },
      [](void* self) noexcept { delete *static_cast<D**>(self); },
  };

  void Reset() noexcept {
    if (ops_ != nullptr) {
      ops_->destroy(storage_);
      ops_ = nullptr;
    }
  }

  alignas(std::max_align_t) unsigned char storage_[kInlineBytes];
  const Ops* ops_ = nullptr;
};

}  // namespace keg::store
