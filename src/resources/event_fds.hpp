#pragma once
// Event descriptors: eventfd (counter, semaphore mode), signalfd (mask), timerfd (clock, remaining
// time, interval, unread expirations) and epoll (every registration with its events and data).
// Their state comes from /proc/PID/fdinfo; files.cpp puts them at their numbers like any other fd.
#include <optional>

#include "proc/fdinfo.hpp"
#include "resources/context.hpp"

namespace ckpt::event_fds {

// Before the fds are described: a periodic timerfd counts only its first unread expiration until
// the program reads it or asks for its time; an injected timerfd_gettime on each timerfd adds the
// periods missed since, so that fdinfo shows the count a read would return.
Status settle_timerfds(DumpContext& ctx);

// Fills j (which has "fd", "flags") for an anon_inode link this module knows; nullopt if the
// link is not an event descriptor.
std::optional<Status> describe(std::string_view link, const proc::FdInfo& info, json& j);

// Creates the descriptor described by j in the calling (puppet) process; returns the new fd.
Result<int> create(const json& j);

// Adds the registrations of every epoll fd once all fds are at their numbers.
Status register_epoll_targets(const json& fds);

}  // namespace ckpt::event_fds
