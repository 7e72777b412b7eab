#pragma once
// Result<T>: a value or an Error carrying errno and context. Every layer returns these instead of
// throwing or aborting, so that a supervisor can decide what to do with a failed dump.
#include <cerrno>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace ckpt {

struct Error {
  int errnum = 0;       // errno value, 0 when the failure is not a system error
  std::string message;  // what failed, on which object, why: "open /x/manifest: No such file"

  // Prepends context, e.g. err.wrap("dump pid 42") -> "dump pid 42: <old message>".
  Error wrap(std::string_view context) const& {
    return Error{errnum, fmt::format("{}: {}", context, message)};
  }
};

// An error from the current errno: "<what>: <strerror(errno)>".
Error sys_error(std::string_view what);
Error sys_error(int errnum, std::string_view what);
// An error that is not a system call failure (bad input, unsupported state).
Error make_error(std::string_view what, int errnum = 0);

template <typename... Args>
Error errorf(fmt::format_string<Args...> f, Args&&... args) {
  return make_error(fmt::format(f, std::forward<Args>(args)...));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error e) : v_(std::move(e)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : err_(std::move(e)), failed_(true) {}

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const& { return err_; }
  Error&& error() && { return std::move(err_); }

 private:
  Error err_;
  bool failed_ = false;
};

using Status = Result<void>;

}  // namespace ckpt

// Propagate an error: CKPT_TRY(expr) evaluates expr (a Result<void>) and returns its error.
#define CKPT_TRY(expr)                                 \
  do {                                                 \
    auto ckpt_try_r_ = (expr);                         \
    if (!ckpt_try_r_.ok()) return ckpt_try_r_.error(); \
  } while (0)

// CKPT_TRY_ASSIGN(var, expr): declares var from a Result<T>, returning the error on failure.
#define CKPT_CONCAT_INNER_(a, b) a##b
#define CKPT_CONCAT_(a, b) CKPT_CONCAT_INNER_(a, b)
#define CKPT_TRY_ASSIGN(var, expr)                                 \
  auto CKPT_CONCAT_(ckpt_try_v_, __LINE__) = (expr);               \
  if (!CKPT_CONCAT_(ckpt_try_v_, __LINE__).ok())                   \
    return std::move(CKPT_CONCAT_(ckpt_try_v_, __LINE__)).error(); \
  var = std::move(CKPT_CONCAT_(ckpt_try_v_, __LINE__)).value()
