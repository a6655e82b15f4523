#include "server/crash_report.h"

#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "server/version.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KEG_CRASH_REPORT_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KEG_CRASH_REPORT_UNDER_SANITIZER 1
#endif
#endif

namespace keg::server {
namespace {

int report_fd = STDOUT_FILENO;  // set once by InstallCrashReport, before any thread starts
std::atomic<bool> report_enabled{true};  // crash-log-enabled

// Async-signal-safe output: write(2) only.
void Put(const char* s) {
  size_t left = std::strlen(s);
  while (left > 0) {
    const ssize_t n = ::write(report_fd, s, left);
    if (n <= 0) return;  // nothing better to do in a dying process
    s += n;
    left -= static_cast<size_t>(n);
  }
}

void PutNumber(uint64_t v, unsigned base) {
  char buf[24];
  char* p = buf + sizeof(buf);
  *--p = '\0';
  do {
    *--p = "0123456789abcdef"[v % base];
    v /= base;
  } while (v != 0);
  if (base == 16) {
    *--p = 'x';
    *--p = '0';
  }
  Put(p);
}

void PutSigned(int64_t v) {
  if (v < 0) {
    Put("-");
    PutNumber(static_cast<uint64_t>(-(v + 1)) + 1, 10);
  } else {
    PutNumber(static_cast<uint64_t>(v), 10);
  }
}

const char* SignalName(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    default: return "?";
  }
}

[[maybe_unused]] void OnFatalSignal(int sig, siginfo_t* info, void* /*ucontext*/) {  // (unused under a sanitizer)
  if (!report_enabled.load(std::memory_order_relaxed)) {
    ::raise(sig);  // (SA_RESETHAND: the default action)
    return;
  }
  const int saved_errno = errno;
  Put("\n\n=== KEG BUG REPORT START: Cut & paste starting from here ===\n");
  PutSigned(::getpid());
  Put(":M # keg ");
  Put(kKegVersion);
  Put(" crashed by signal: ");
  PutSigned(sig);
  Put(" (");
  Put(SignalName(sig));
  Put("), si_code: ");
  PutSigned(info != nullptr ? info->si_code : 0);
  Put("\n");
  if (info != nullptr && info->si_code > 0) {  // a fault: where
    Put("Accessing address: ");
    PutNumber(reinterpret_cast<uintptr_t>(info->si_addr), 16);
    Put("\n");
  }
  if (info != nullptr && info->si_code <= 0) {  // sent (kill, raise, abort), not a fault
    Put("Killed by PID: ");
    PutSigned(info->si_pid);
    Put(", UID: ");
    PutSigned(info->si_uid);
    Put("\n");
  }
  Put("Crashed thread: ");
  PutSigned(::syscall(SYS_gettid));
  Put("\n\n------ STACK TRACE ------\n");
  void* frames[64];
  const int n = ::backtrace(frames, 64);
  ::backtrace_symbols_fd(frames, n, report_fd);
  Put("\n=== KEG BUG REPORT END. Make sure to include from START to END. ===\n\n");
  errno = saved_errno;
  // SA_RESETHAND put the default action back: die of the signal, as without this handler.
  ::raise(sig);
}

}  // namespace

void SetCrashReportEnabled(bool on) { report_enabled.store(on, std::memory_order_relaxed); }

void InstallCrashReport(const std::string& logfile) {
#ifdef KEG_CRASH_REPORT_UNDER_SANITIZER
  (void)logfile;
#else
  if (!logfile.empty()) {
    const int fd = ::open(logfile.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) report_fd = fd;  // (else stdout: better than nothing)
  }
  // backtrace() loads libgcc on its first call, which allocates: done here, not in the handler.
  void* warm[1];
  (void)::backtrace(warm, 1);
  struct sigaction act {};
  act.sa_sigaction = OnFatalSignal;
  act.sa_flags = static_cast<int>(SA_SIGINFO | SA_RESETHAND | SA_NODEFER);
  sigemptyset(&act.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::sigaction(sig, &act, nullptr);
#endif
}

}  // namespace keg::server
