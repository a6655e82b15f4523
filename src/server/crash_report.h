// The crash report: what keg writes to its log when a fatal signal (SIGSEGV, SIGBUS, SIGFPE,
// SIGILL, SIGABRT) kills it, in Redis's words, which operators and Redis's tests look for
// ("crashed by signal", "STACK TRACE"): the signal, the faulting address, and the stack of the
// thread that crashed. Then the process dies of that signal as it would have (core dump and
// exit status unchanged).
// Thread: InstallCrashReport from main, before other threads start; the handler runs on the
// crashing thread and only makes async-signal-safe calls.
#pragma once

#include <string>

namespace keg::server {

/// Writes the report to `logfile` (appended), or to stdout when it is empty (the log's
/// destinations). Does nothing in a sanitizer build: the sanitizer's own report is the better one.
void InstallCrashReport(const std::string& logfile);
/// crash-log-enabled: whether the handler writes the report (it dies of the signal either way).
/// Any thread.
void SetCrashReportEnabled(bool on);

}  // namespace keg::server
