#include "proxy/secondary_read.hpp"

#include "protocol/messages.hpp"
#include "protocol/wire.hpp"
#include "proxy/backend_query.hpp"

namespace switchyard::proxy {
namespace {

using monitoring::ReadFallback;

//! The next message of the secondary's answer, or why there is none.
struct NextMessage {
  std::optional<protocol::Frame> frame;
  ReadFallback failure = ReadFallback::kConnect;
  std::string error;
};

asio::awaitable<NextMessage> next_message(SecondaryLink& link, std::chrono::milliseconds timeout) {
  if (link.has_frame()) { // no wait, so no timer: most answers arrive in one read
    auto frame = co_await link.read_frame();
    if (frame) co_return NextMessage{*frame, {}, {}};
    link.abandon_read();
    co_return NextMessage{std::nullopt, ReadFallback::kSecondaryError,
                          "the secondary sent a malformed message: " + frame.error()};
  }
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto next = co_await (link.read_frame() || timer.async_wait(use_tuple));
  if (next.index() == 1) {
    link.abandon_read();
    co_return NextMessage{std::nullopt, ReadFallback::kTimeout,
                          "no answer from the secondary within read_routing.timeout"};
  }
  auto& frame = std::get<0>(next);
  if (!frame) {
    link.abandon_read();
    co_return NextMessage{std::nullopt, ReadFallback::kConnect,
                          "lost the secondary connection: " + frame.error()};
  }
  co_return NextMessage{*frame, {}, {}};
}

// What the client sees of a read's answer; the rest is the secondary connection's own.
bool for_client(char tag) {
  return tag == 'T' || tag == 'D' || tag == 'C' || tag == 'I' || tag == 'N';
}

} // namespace

asio::awaitable<SecondaryAnswer>
read_from_secondary(SecondaryLink& link, const SecondaryLink::Read& read,
                    std::chrono::milliseconds timeout, std::string* out, size_t limit,
                    routing::ResultDigest& digest, const DescriptionFilter* describe) {
  SecondaryAnswer sent = co_await send_secondary_read(link, read, timeout);
  if (sent.state == SecondaryAnswer::State::kFailed) co_return sent;
  co_return co_await collect_secondary_answer(link, timeout, out, limit, digest, describe);
}

asio::awaitable<SecondaryAnswer> send_secondary_read(SecondaryLink& link,
                                                     const SecondaryLink::Read& read,
                                                     std::chrono::milliseconds timeout) {
  using State = SecondaryAnswer::State;
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto started = co_await (link.start_read(read) || timer.async_wait(use_tuple));
  if (started.index() == 1) {
    link.abandon_read();
    co_return SecondaryAnswer{State::kFailed, ReadFallback::kTimeout,
                              "the secondary did not take the read within read_routing.timeout"};
  }
  if (auto& status = std::get<0>(started); !status) {
    co_return SecondaryAnswer{State::kFailed, ReadFallback::kConnect, status.error()};
  }
  co_return SecondaryAnswer{State::kComplete, {}, {}};
}

asio::awaitable<SecondaryAnswer> collect_secondary_answer(SecondaryLink& link,
                                                          std::chrono::milliseconds timeout,
                                                          std::string* out, size_t limit,
                                                          routing::ResultDigest& digest,
                                                          const DescriptionFilter* describe) {
  using State = SecondaryAnswer::State;
  std::string error;
  bool undescribed = false; // read on to ReadyForQuery, then let the primary answer
  while (true) {
    NextMessage next = co_await next_message(link, timeout);
    if (!next.frame) co_return SecondaryAnswer{State::kFailed, next.failure, next.error};
    const protocol::Frame& frame = *next.frame;
    if (frame.tag == 'Z') {
      if (!error.empty())
        co_return SecondaryAnswer{State::kFailed, ReadFallback::kSecondaryError, error};
      if (undescribed) co_return SecondaryAnswer{State::kUndescribed, {}, {}};
      co_return SecondaryAnswer{State::kComplete, {}, {}};
    }
    if (frame.tag == 'E') {
      // Read on to ReadyForQuery so the connection stays usable.
      if (error.empty()) {
        error = describe_error(frame.body);
        digest.set_error(sqlstate_of(frame.body));
      }
      continue;
    }
    // The secondary connection's own: settings, notifications, the extended protocol's acks.
    if (frame.tag == 'S' || frame.tag == 'A' || frame.tag == '1' || frame.tag == '2' ||
        frame.tag == '3')
      continue;
    if (!for_client(frame.tag)) {
      link.abandon_read();
      co_return SecondaryAnswer{State::kFailed, ReadFallback::kSecondaryError,
                                std::string("unexpected message '") + frame.tag +
                                    "' answering a read"};
    }
    if (!error.empty() || undescribed) continue;
    if (frame.tag == 'D') digest.add_row(frame.body);
    if (out == nullptr) continue;
    if (frame.tag == 'T' && describe != nullptr) {
      auto body = (*describe)(frame.body);
      if (!body) {
        undescribed = true;
        continue;
      }
      protocol::append_message(*out, frame.tag, *body);
    } else {
      protocol::append_message(*out, frame.tag, frame.body);
    }
    if (out->size() > limit) co_return SecondaryAnswer{State::kPartial, {}, {}};
  }
}

asio::awaitable<bool> stream_secondary_rest(SecondaryLink& link, std::chrono::milliseconds timeout,
                                            size_t limit, routing::ResultDigest& digest,
                                            const ClientSink& sink,
                                            const DescriptionFilter* describe) {
  std::string out;
  bool failed = false;
  while (true) {
    NextMessage next = co_await next_message(link, timeout);
    if (!next.frame) {
      protocol::ErrorFields fields;
      fields.severity = "ERROR";
      fields.sqlstate = protocol::sqlstate::kConnectionFailure;
      fields.message = "the secondary database failed while sending this result: " + next.error;
      protocol::append_error(out, fields);
      co_return co_await sink(out);
    }
    const protocol::Frame& frame = *next.frame;
    if (frame.tag == 'Z') break;
    if (frame.tag == 'E' && !failed) {
      failed = true;
      digest.set_error(sqlstate_of(frame.body));
      protocol::append_message(out, frame.tag, frame.body);
    } else if (for_client(frame.tag) && !failed) {
      if (frame.tag == 'D') digest.add_row(frame.body);
      std::optional<std::string> described;
      if (frame.tag == 'T' && describe != nullptr) described = (*describe)(frame.body);
      protocol::append_message(out, frame.tag, described ? *described : frame.body);
    }
    if (out.size() > limit) {
      if (!co_await sink(out)) co_return false;
      out.clear();
    }
  }
  co_return co_await sink(out);
}

} // namespace switchyard::proxy
