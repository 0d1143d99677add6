#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "monitoring/metrics.hpp"
#include "proxy/secondary_link.hpp"
#include "routing/result_digest.hpp"

namespace switchyard::proxy {

//! How far a read on the secondary got.
struct SecondaryAnswer {
  enum class State {
    kComplete, //!< the whole answer is in `out`, up to (without) ReadyForQuery
    kPartial,  //!< `out` filled up: send it, then stream the rest with stream_secondary_rest
    kFailed,   //!< nothing may reach the client; run the read on the primary instead
    //! It describes its rows with objects `describe` could not name as the primary does:
    //! nothing reached the client; run the read on the primary instead.
    kUndescribed,
  };
  State state = State::kFailed;
  monitoring::ReadFallback failure = monitoring::ReadFallback::kSecondaryError;
  std::string error; //!< why it failed, for the log
};

//! The RowDescription body the client sees for one of the secondary's; nullopt when there
//! is none it may see (see SecondaryAnswer::State::kUndescribed).
using DescriptionFilter = std::function<std::optional<std::string>(std::string_view body)>;

//! Runs `read` on the secondary and collects what the client should see of the
//! answer in `out` (null: only digest it): row descriptions (through `describe` unless
//! null), rows, command tags and notices, without the secondary's ParameterStatus,
//! notifications or ReadyForQuery. Stops at ReadyForQuery or once `out` passes `limit`
//! bytes. An error, a lost connection or `timeout` without a message fails the read.
asio::awaitable<SecondaryAnswer>
read_from_secondary(SecondaryLink& link, const SecondaryLink::Read& read,
                    std::chrono::milliseconds timeout, std::string* out, size_t limit,
                    routing::ResultDigest& digest, const DescriptionFilter* describe = nullptr);

//! The two halves of read_from_secondary, for a caller with something to do in between:
//! sends the read (kComplete once sent), then collects its answer.
asio::awaitable<SecondaryAnswer> send_secondary_read(SecondaryLink& link,
                                                     const SecondaryLink::Read& read,
                                                     std::chrono::milliseconds timeout);
asio::awaitable<SecondaryAnswer>
collect_secondary_answer(SecondaryLink& link, std::chrono::milliseconds timeout, std::string* out,
                         size_t limit, routing::ResultDigest& digest,
                         const DescriptionFilter* describe = nullptr);

//! Sends one batch of the answer to the client; false when the client is gone.
using ClientSink = std::function<asio::awaitable<bool>(std::string&)>;

//! Streams the rest of a kPartial answer to `sink` in batches of about `limit` bytes, up to
//! (without) ReadyForQuery. Rows have reached the client, so a failure can no longer be
//! retried: it becomes an ErrorResponse to the client; a later RowDescription `describe`
//! cannot name as the primary does goes as the secondary sent it. False when the client is
//! gone.
asio::awaitable<bool> stream_secondary_rest(SecondaryLink& link, std::chrono::milliseconds timeout,
                                            size_t limit, routing::ResultDigest& digest,
                                            const ClientSink& sink,
                                            const DescriptionFilter* describe = nullptr);

} // namespace switchyard::proxy
