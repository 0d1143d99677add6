#include "proxy/client_session.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <limits>
#include <optional>
#include <random>

#include "monitoring/relay_stats.hpp"
#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "protocol/startup.hpp"
#include "proxy/backend_connector.hpp"
#include "proxy/backend_pool.hpp"
#include "proxy/backend_query.hpp"
#include "proxy/chunk_reader.hpp"
#include "proxy/client_auth.hpp"
#include "proxy/closing.hpp"
#include "proxy/message_reader.hpp"
#include "proxy/mirror_relay.hpp"
#include "proxy/relay_accounting.hpp"
#include "proxy/relay_loop.hpp"
#include "proxy/role_swap.hpp"
#include "proxy/session_activity.hpp"

namespace switchyard::proxy {
namespace {

using Clock = std::chrono::steady_clock;
using monitoring::BackendRole;
using monitoring::CloseReason;
namespace sqlstate = protocol::sqlstate;

// Longest the reset of a primary connection to be kept may take; past it, it is closed.
constexpr auto kResetTimeout = std::chrono::seconds(2);

bool is_quiet(CloseReason reason) {
  return reason == CloseReason::kClientTerminate || reason == CloseReason::kClientDisconnect ||
         reason == CloseReason::kCancelRequest;
}

// Counts a client as active until release() or its end, even if its coroutine throws, so a
// failure can never use up a max_clients slot for good.
class ActiveClient {
public:
  explicit ActiveClient(Services& services) : services_(services) {
    ++services_.active_clients();
    services_.metrics().clients_active().Increment();
  }
  ~ActiveClient() { release(); }
  ActiveClient(const ActiveClient&) = delete;
  ActiveClient& operator=(const ActiveClient&) = delete;

  void release() {
    if (std::exchange(released_, true)) return;
    --services_.active_clients();
    services_.metrics().clients_active().Decrement();
  }

private:
  Services& services_;
  bool released_ = false;
};

class ClientSession {
public:
  ClientSession(tcp::socket socket, Services& services)
      : peer_(peer_name(socket)), client_(std::move(socket)), services_(services),
        stats_(monitoring::RelayStats::for_this_thread(services.metrics())),
        runtime_(services.enter_session()) {
    error_code ec;
    client_.socket().set_option(tcp::no_delay(true), ec);
  }
  ~ClientSession() { services_.leave_session(*runtime_); }
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  asio::awaitable<void> run() {
    services_.metrics().clients_accepted().Increment();

    asio::steady_timer deadline(co_await asio::this_coro::executor,
                                runtime_->config->limits.startup_timeout);
    auto started = co_await (start() || deadline.async_wait(use_tuple));
    std::optional<Closing> closing;
    if (started.index() == 0) {
      closing = std::move(std::get<0>(started));
    } else {
      closing = refuse(CloseReason::kStartupTimeout, sqlstate::kProtocolViolation,
                       "startup and authentication did not finish within limits.startup_timeout");
    }
    if (!closing) closing = co_await relay();
    co_await finish(*closing);
  }

private:
  // Startup through the primary login; nullopt means the relay may begin.
  asio::awaitable<std::optional<Closing>> start() {
    const config::Config& config = *runtime_->config;
    MessageReader reader(client_, protocol::Direction::kFrontend, protocol::kMaxStartupPacket);
    protocol::StartupPacket startup;
    if (auto refused = co_await negotiate(reader, startup)) co_return refused;

    user_ = std::string(startup.parameter("user"));
    if (config.tls_mode == config::ClientTlsMode::kRequire && !client_.tls()) {
      co_return refuse(CloseReason::kTlsRequired, sqlstate::kInvalidAuthorization,
                       "switchyard requires an SSL connection (tls.mode is require)");
    }
    if (!startup.parameter("replication").empty()) {
      co_return refuse(CloseReason::kProtocolViolation, sqlstate::kFeatureNotSupported,
                       "replication connections are not supported through switchyard");
    }
    if (services_.active_clients() > config.limits.max_clients) {
      co_return refuse(CloseReason::kTooManyClients, sqlstate::kTooManyConnections,
                       "sorry, too many clients already (limits.max_clients is " +
                           std::to_string(config.limits.max_clients) + ")");
    }
    auto authenticated = co_await authenticate_client(client_, reader, *runtime_, user_);
    if (!authenticated && reader.peer_closed()) {
      co_return Closing{CloseReason::kClientDisconnect, "closed during authentication", {}};
    }
    if (!authenticated) {
      bool wrong_password = is_auth_failure(authenticated.error());
      co_return refuse(wrong_password ? CloseReason::kAuthFailed : CloseReason::kProtocolViolation,
                       wrong_password ? sqlstate::kInvalidPassword : sqlstate::kProtocolViolation,
                       authenticated.error());
    }
    client_leftover_ = reader.take_leftover();
    co_return co_await connect_primary(startup);
  }

  // Reads packets until a StartupMessage, answering SSLRequest and GSSENCRequest on the way.
  asio::awaitable<std::optional<Closing>> negotiate(MessageReader& reader,
                                                    protocol::StartupPacket& startup) {
    while (true) {
      auto packet = co_await reader.read_startup_packet();
      if (!packet) {
        if (reader.peer_closed()) {
          co_return Closing{CloseReason::kClientDisconnect, "closed during startup", {}};
        }
        co_return refuse(CloseReason::kProtocolViolation, sqlstate::kProtocolViolation,
                         packet.error());
      }
      auto parsed = protocol::parse_startup_packet(*packet);
      if (!parsed) {
        co_return refuse(CloseReason::kProtocolViolation, sqlstate::kProtocolViolation,
                         parsed.error());
      }
      switch (parsed->kind) {
      case protocol::StartupKind::kStartup: startup = std::move(*parsed); co_return std::nullopt;
      case protocol::StartupKind::kCancelRequest: co_return co_await cancel(*parsed);
      case protocol::StartupKind::kSslRequest:
      case protocol::StartupKind::kGssEncRequest: break;
      }
      // Bytes sent behind an encryption request, before the handshake, could be injected by
      // a man in the middle (CVE-2021-23214); never read them as protocol.
      if (reader.has_leftover()) {
        co_return refuse(CloseReason::kUnencryptedAfterSslRequest, sqlstate::kProtocolViolation,
                         "received unencrypted data after SSL request");
      }
      bool ssl = parsed->kind == protocol::StartupKind::kSslRequest;
      if (ssl && client_.tls()) {
        co_return refuse(CloseReason::kProtocolViolation, sqlstate::kProtocolViolation,
                         "SSLRequest received on an encrypted connection");
      }
      bool accept = ssl && runtime_->client_tls != nullptr;
      if (auto ec = co_await client_.write_all(accept ? "S" : "N"); ec) {
        co_return peer_gone(CloseReason::kClientDisconnect, ec);
      }
      if (accept) {
        if (auto ec = co_await client_.start_tls(*runtime_->client_tls, ssl::stream_base::server);
            ec) {
          co_return Closing{CloseReason::kTlsHandshakeFailed, ec.message(), {}};
        }
      }
    }
  }

  asio::awaitable<Closing> cancel(const protocol::StartupPacket& packet) {
    auto& metrics = services_.metrics();
    auto target = services_.cancels().find(packet.cancel_pid, packet.cancel_key);
    if (!target) {
      metrics.cancel_requests(monitoring::CancelResult::kUnknownKey).Increment();
      co_return Closing{
          CloseReason::kCancelRequest, "cancel request with an unknown key ignored", {}};
    }
    auto sent =
        co_await send_cancel_request(target->backend, target->backend_pid, target->backend_key);
    if (!sent) {
      metrics.cancel_requests(monitoring::CancelResult::kFailed).Increment();
      co_return Closing{
          CloseReason::kCancelRequest, "cancel request not delivered: " + sent.error(), {}};
    }
    metrics.cancel_requests(monitoring::CancelResult::kForwarded).Increment();
    co_return Closing{CloseReason::kCancelRequest, "cancel request forwarded", {}};
  }

  // The login for a backend: the target's own user, password and database when its URI
  // has them, else the client's, with the client's other startup parameters.
  LoginRequest login_for(const config::BackendTarget& target,
                         const protocol::StartupPacket& startup) const {
    std::string_view database = startup.parameter("database");
    LoginRequest login =
        backend_login(*runtime_->config, target, user_, database.empty() ? user_ : database);
    for (const auto& [key, value] : startup.parameters) {
      if (key != "user" && key != "database") login.options.emplace_back(key, value);
    }
    return login;
  }

  asio::awaitable<std::optional<Closing>> connect_primary(const protocol::StartupPacket& startup) {
    const config::Config& config = *runtime_->config;
    const config::BackendTarget& target = config.primary;
    LoginRequest login = login_for(target, startup);
    if (config.secondary) secondary_login_ = login_for(*config.secondary, startup);
    primary_database_ = login.database;
    application_name_ = std::string(startup.parameter("application_name"));
    auto& metrics = services_.metrics();
    // Only plain connections to a PostgreSQL primary are kept (BackendPool).
    if (target.kind == config::BackendKind::kPostgres && config.limits.pooled_backends > 0) {
      pool_key_ = pool_key(target, login);
    }
    // No co_await inside ?: here: GCC 12 destroys such a result twice.
    BackendResult result = BackendFailure{};
    if (pool_key_.empty()) {
      result = co_await connect_backend(target, runtime_->primary_tls.get(), login);
    } else {
      result = co_await kept_or_new_backend(target, login);
    }
    if (auto* failed = std::get_if<BackendFailure>(&result)) {
      metrics.backend_connect_failures(BackendRole::kPrimary).Increment();
      if (failed->rejected) {
        co_return Closing{CloseReason::kBackendRejected,
                          "primary refused the login: " + failed->message, failed->error_response};
      }
      co_return refuse(CloseReason::kBackendUnavailable, sqlstate::kConnectionFailure,
                       "could not connect to the primary database at " + target.endpoint() + ": " +
                           failed->message);
    }
    backend_.emplace(std::move(std::get<BackendSession>(result)));
    metrics.backend_connections(BackendRole::kPrimary).Increment();
    if (config.secondary) co_await note_database(startup);
    activity_.transaction_status = backend_->transaction_status;
    auto [pid, key] = services_.cancels().add(CancelTarget{target, backend_->pid, backend_->key});
    cancel_pid_ = pid;

    // The client sees the primary's own greeting, with our key in place of the backend's.
    std::string greeting = backend_->greeting;
    protocol::append_backend_key_data(greeting, pid, key);
    protocol::append_ready_for_query(greeting, activity_.transaction_status);
    if (auto ec = co_await client_.write_all(greeting); ec) {
      co_return peer_gone(CloseReason::kClientDisconnect, ec);
    }
    spdlog::debug("session {} user={} connected to primary {}", peer_, user_, target.redacted);
    co_return std::nullopt;
  }

  // What a kept connection must have been logged in with to serve `login`: the same
  // primary (its URI, password aside), user, password, database and startup parameters
  // (in any order).
  static std::string pool_key(const config::BackendTarget& target, const LoginRequest& login) {
    auto options = login.options;
    std::sort(options.begin(), options.end());
    std::string key = target.redacted;
    for (const std::string* part : {&login.user, &login.password, &login.database})
      key.append(1, '\0').append(*part);
    for (const auto& [name, value] : options)
      key.append(1, '\0').append(name).append(1, '=').append(value);
    return key;
  }

  // A connection a client with the same login left (BackendPool), else a new one. Kept
  // connections count against the server's connection limits (max_connections, a role's
  // or a database's CONNECTION LIMIT), so a login refused for too many connections ends
  // the oldest kept connection of another login and is tried again, as pgbouncer does.
  asio::awaitable<BackendResult> kept_or_new_backend(const config::BackendTarget& target,
                                                     const LoginRequest& login) {
    auto& pool = services_.backend_pool();
    while (auto kept = pool.take(pool_key_)) {
      services_.metrics().backend_pool_idle().Set(static_cast<double>(pool.size()));
      if (auto socket = co_await adopt(*kept)) {
        services_.metrics().backend_pool_reused().Increment();
        co_return BackendSession{
            Stream(std::move(*socket)), std::move(kept->greeting), kept->pid, kept->key, 'I', {}};
      }
    }
    while (true) {
      BackendResult result = co_await connect_backend(target, runtime_->primary_tls.get(), login);
      auto* failed = std::get_if<BackendFailure>(&result);
      if (failed == nullptr || failed->sqlstate != sqlstate::kTooManyConnections) {
        co_return std::move(result);
      }
      auto other = pool.take_oldest(target.redacted);
      if (!other) co_return std::move(result);
      services_.metrics().backend_pool_idle().Set(static_cast<double>(pool.size()));
      spdlog::info("session {}: ending a kept primary connection of another login: the primary "
                   "refused this one with {} ({})",
                   peer_, failed->sqlstate, failed->message);
      co_await end_kept(std::move(*other));
    }
  }

  // A kept connection's descriptor as a socket of this thread, or nullopt (and closed) when
  // Asio's reactor could not take it.
  static asio::awaitable<std::optional<StreamSocket>> adopt(const BackendPool::Parked& kept) {
    StreamSocket socket(co_await asio::this_coro::executor);
    error_code ec;
    socket.assign(kept.protocol, kept.fd, ec);
    if (ec) {
      ::close(kept.fd);
      co_return std::nullopt;
    }
    co_return std::move(socket);
  }

  // Ends a kept connection and waits (up to a second) until the backend has gone: it
  // gives up its connection slot before it closes its socket.
  static asio::awaitable<void> end_kept(BackendPool::Parked kept) {
    auto socket = co_await adopt(kept);
    if (!socket) co_return;
    Stream stream(std::move(*socket));
    std::string terminate;
    protocol::append_terminate(terminate);
    if (auto ec = co_await stream.write_all(terminate); !ec) {
      asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::seconds(1));
      co_await (drain_until_closed(stream) || timer.async_wait(use_tuple));
    }
    stream.close();
  }

  static asio::awaitable<void> drain_until_closed(Stream& stream) {
    std::array<char, 256> sink{};
    while (true) {
      auto [ec, n] = co_await stream.read_some(asio::buffer(sink));
      if (ec) co_return;
    }
  }

  // Keeps the primary connection for the next client with the same login when this client
  // logged off with nothing pending and the connection resets cleanly (DISCARD ALL ends
  // what the session left: settings, prepared statements, temporary tables, LISTENs,
  // advisory locks, cursors). Whether it was kept.
  asio::awaitable<bool> keep_for_next_client(const Closing& closing) {
    if (pool_key_.empty() || closing.reason != CloseReason::kClientTerminate ||
        activity_.transaction_status != 'I' || activity_.syncs_in_flight > 0 ||
        !backend_->leftover.empty() || backend_->stream.tls()) {
      co_return false;
    }
    MessageReader reader(backend_->stream, protocol::Direction::kBackend,
                         std::numeric_limits<uint32_t>::max());
    asio::steady_timer timer(co_await asio::this_coro::executor, kResetTimeout);
    auto reset = co_await (run_query(backend_->stream, reader, "DISCARD ALL") ||
                           timer.async_wait(use_tuple));
    auto* done = std::get_if<0>(&reset);
    if (done == nullptr || !*done || reader.has_leftover()) {
      spdlog::debug("session {}: primary connection not kept: {}", peer_,
                    done == nullptr ? std::string("DISCARD ALL timed out")
                    : !*done        ? done->error()
                                    : std::string("it sent more than DISCARD ALL's answer"));
      co_return false;
    }
    error_code ec;
    auto protocol = backend_->stream.socket().local_endpoint(ec).protocol();
    if (ec) co_return false;
    const config::Limits& limits = runtime_->config->limits;
    auto& pool = services_.backend_pool();
    BackendPool::Parked parked{-1,
                               protocol,
                               std::move(backend_->greeting),
                               backend_->pid,
                               backend_->key,
                               BackendPool::Clock::now()};
    parked.fd = backend_->stream.detach();
    pool.park(runtime_->config->primary.redacted, pool_key_, std::move(parked),
              limits.pooled_backends);
    services_.metrics().backend_pool_idle().Set(static_cast<double>(pool.size()));
    co_return true;
  }

  // Makes the database known to role swaps; the first session of a database after a swap
  // settled without it catches up its sequences on the new primary first.
  asio::awaitable<void> note_database(const protocol::StartupPacket& startup) {
    std::string_view database = startup.parameter("database");
    Services::SessionDatabase db{user_, std::string(database.empty() ? user_ : database)};
    if (services_.note_session_database(db, runtime_->role_generation)) {
      co_await catch_up_sequences(services_, *runtime_, db);
    }
  }

  asio::awaitable<Closing> relay() {
    activity_.last_activity = Clock::now();
    if (secondary_login_) {
      MirrorRelay mirror(client_, *backend_, services_, runtime_, stats_, activity_,
                         primary_database_, std::move(*secondary_login_), identity(), peer_,
                         client_leftover_);
      auto ended = co_await (mirror.run() || watchdog());
      Closing closing = std::visit([](Closing& c) { return std::move(c); }, ended);
      // The primary connection and the client first: the secondary's end waits for this
      // session's queued writes (async mode), which neither the next client with this login
      // nor the client that left need wait for, nor count against max_clients.
      co_await release_primary(closing);
      co_await release_client(closing);
      co_await mirror.finish();
      co_return closing;
    }
    RelayLoops* loops = services_.relay_loops();
    if (loops != nullptr && !client_.tls() && !backend_->stream.tls()) {
      co_return co_await relay_on_loop(loops->next());
    }
    auto ended = co_await (closing_on_exception(client_to_backend()) ||
                           closing_on_exception(backend_to_client()) || watchdog());
    co_return std::visit([](Closing& c) { return std::move(c); }, ended);
  }

  // No TLS and no secondary: the session's sockets go to a relay loop until it ends
  // (no watchdog here: the loop checks the idle limits and no role swap concerns the session).
  asio::awaitable<Closing> relay_on_loop(RelayLoop& loop) {
    RelayHandoff handoff{client_.detach(),
                         backend_->stream.detach(),
                         std::move(client_leftover_),
                         std::move(backend_->leftover),
                         &runtime_->config->limits,
                         &activity_};
    RelayEnd end = co_await loop.relay(std::move(handoff), asio::use_awaitable);
    error_code client_ec = client_.reattach();
    error_code backend_ec = backend_->stream.reattach();
    // A socket that could not be taken back is closed already; the other still gets its bytes.
    if (backend_ec) end.unsent_to_primary.clear();
    if (client_ec) {
      end.unsent_to_client.clear();
      end.closing.client_error.clear();
    }
    if (client_ec || backend_ec) {
      if (!end.closing.detail.empty()) end.closing.detail += "; ";
      end.closing.detail += "could not take the connections back from the relay loop: " +
                            (client_ec ? client_ec : backend_ec).message();
    }
    if (!end.unsent_to_primary.empty())
      co_await backend_->stream.write_last_words(end.unsent_to_primary);
    if (!end.unsent_to_client.empty()) co_await client_.write_last_words(end.unsent_to_client);
    co_return std::move(end.closing);
  }

  asio::awaitable<Closing> client_to_backend() {
    protocol::FrameScanner scanner(protocol::Direction::kFrontend,
                                   runtime_->config->limits.max_message_size);
    if (!client_leftover_.empty()) {
      std::string first = std::move(client_leftover_);
      if (auto closing = co_await forward_to_backend(scanner, first)) co_return std::move(*closing);
    }
    ChunkReader reader(client_);
    while (true) {
      auto [ec, chunk] = co_await reader.next();
      if (ec) co_return peer_gone(CloseReason::kClientDisconnect, ec);
      if (auto closing = co_await forward_to_backend(scanner, chunk)) co_return std::move(*closing);
    }
  }

  asio::awaitable<std::optional<Closing>> forward_to_backend(protocol::FrameScanner& scanner,
                                                             std::string_view chunk) {
    bool terminate = false;
    if (auto refused = scan_client_chunk(scanner, chunk, activity_, stats_, terminate))
      co_return refused;
    if (terminate) chunk = without_final_terminate(chunk);
    if (auto ec = co_await backend_->stream.write_all(chunk); ec) {
      co_return refuse(CloseReason::kBackendDisconnect, sqlstate::kConnectionFailure,
                       "lost the connection to the primary database: " + ec.message());
    }
    if (terminate) co_return Closing{CloseReason::kClientTerminate, {}, {}};
    co_return std::nullopt;
  }

  asio::awaitable<Closing> backend_to_client() {
    protocol::FrameScanner scanner(protocol::Direction::kBackend,
                                   std::numeric_limits<uint32_t>::max());
    if (!backend_->leftover.empty()) {
      std::string first = std::move(backend_->leftover);
      if (auto closing = co_await forward_to_client(scanner, first)) co_return std::move(*closing);
    }
    ChunkReader reader(backend_->stream);
    while (true) {
      auto [ec, chunk] = co_await reader.next();
      if (ec) co_return peer_gone(CloseReason::kBackendDisconnect, ec);
      if (auto closing = co_await forward_to_client(scanner, chunk)) co_return std::move(*closing);
    }
  }

  asio::awaitable<std::optional<Closing>> forward_to_client(protocol::FrameScanner& scanner,
                                                            std::string_view chunk) {
    if (auto refused = scan_primary_chunk(scanner, chunk, activity_, stats_)) co_return refused;
    if (auto ec = co_await client_.write_all(chunk); ec)
      co_return peer_gone(CloseReason::kClientDisconnect, ec);
    co_return std::nullopt;
  }

  // Closes sessions idle past limits.client_idle_timeout (outside a transaction) or
  // limits.idle_in_transaction_timeout (inside one). A query in flight is not idle. With a
  // secondary, also closes the session once a role swap made its roles stale.
  asio::awaitable<Closing> watchdog() {
    const config::Limits& limits = runtime_->config->limits;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    constexpr auto kRecheck = std::chrono::seconds(1);
    constexpr auto kSwapRecheck = std::chrono::milliseconds(250);
    constexpr auto kStaleRecheck = std::chrono::milliseconds(50);
    bool swappable = runtime_->config->secondary.has_value();
    while (true) {
      bool in_transaction = activity_.transaction_status != 'I';
      auto timeout =
          in_transaction ? limits.idle_in_transaction_timeout : limits.client_idle_timeout;
      auto now = Clock::now();
      bool stale = swappable && services_.role_fence().generation() != runtime_->role_generation;
      if (stale) {
        if (auto closing = close_stale(now)) co_return std::move(*closing);
      }
      if (auto closing = idle_closing(activity_, limits, now)) co_return std::move(*closing);
      bool any_timeout =
          limits.client_idle_timeout.count() > 0 || limits.idle_in_transaction_timeout.count() > 0;
      if (!any_timeout) {
        timer.expires_at(Clock::time_point::max());
      } else if (timeout.count() > 0 && activity_.syncs_in_flight == 0) {
        timer.expires_at(std::min(activity_.last_activity + timeout, now + kRecheck));
      } else {
        timer.expires_after(kRecheck);
      }
      if (swappable)
        timer.expires_at(std::min(timer.expiry(), now + (stale ? kStaleRecheck : kSwapRecheck)));
      auto [ec] = co_await timer.async_wait(use_tuple);
      if (ec) co_return Closing{CloseReason::kShutdown, "watchdog cancelled", {}};
    }
  }

  // A session whose backends have the roles from before a role swap ends when it is idle,
  // or idle in a transaction once cutover.swap_timeout has passed, so that the writes of
  // newer sessions, held until it is gone, never run in the opposite database order.
  std::optional<Closing> close_stale(Clock::time_point now) const {
    // A short quiet spell first: a client that just had its answer may be sending the next
    // request, which the relay then refuses before running it.
    constexpr auto kQuiet = std::chrono::milliseconds(50);
    if (activity_.syncs_in_flight > 0 || now - activity_.last_activity < kQuiet) {
      return std::nullopt;
    }
    bool in_transaction = activity_.transaction_status != 'I';
    if (in_transaction &&
        now - services_.role_fence().advanced_at() < runtime_->config->cutover.swap_timeout) {
      return std::nullopt;
    }
    return refuse(CloseReason::kRoleSwap, sqlstate::kAdminShutdown,
                  in_transaction
                      ? std::string(kRoleSwapMessage) + "; the open transaction did not end within "
                                                        "cutover.swap_timeout and was rolled back"
                      : std::string(kRoleSwapMessage));
  }

  asio::awaitable<void> finish(const Closing& closing) {
    co_await release_primary(closing);
    co_await release_client(closing);
  }

  // Ends the client's side, once: counts and logs first, so the metric is settled by the
  // time the client reads the error. From then on the session is no client of max_clients.
  asio::awaitable<void> release_client(const Closing& closing) {
    if (std::exchange(client_released_, true)) co_return;
    services_.metrics().client_closed(closing.reason).Increment();
    auto level = is_quiet(closing.reason)                                    ? spdlog::level::debug
                 : closing.reason == monitoring::CloseReason::kInternalError ? spdlog::level::err
                                                                             : spdlog::level::info;
    spdlog::log(level, "session {} user={} closed: reason={} {}", peer_,
                user_.empty() ? "-" : user_, monitoring::to_string(closing.reason), closing.detail);
    if (!closing.client_error.empty()) co_await client_.write_last_words(closing.client_error);
    client_.close();
    active_.release();
  }

  // Keeps the primary connection for the next client, or ends it; once. The cancel key goes
  // first, so the client that left cannot cancel what the next one runs on a kept backend.
  asio::awaitable<void> release_primary(const Closing& closing) {
    if (cancel_pid_ != 0) services_.cancels().remove(std::exchange(cancel_pid_, 0));
    if (!backend_ || std::exchange(primary_released_, true)) co_return;
    if (!co_await keep_for_next_client(closing)) {
      // A Terminate lets the backend end cleanly instead of logging an unexpected EOF;
      // the relays keep the client's own from it.
      std::string terminate;
      protocol::append_terminate(terminate);
      co_await backend_->stream.write_last_words(terminate);
      backend_->stream.close();
    }
    services_.metrics().backend_connections(BackendRole::kPrimary).Decrement();
  }

  // Who this session is to the read router's cohort key.
  routing::SessionIdentity identity() const {
    thread_local std::mt19937_64 random{std::random_device{}()};
    routing::SessionIdentity id;
    id.session_id = fmt::format("{:016x}", random());
    id.user = user_;
    id.application_name = application_name_;
    id.client_address = peer_.substr(0, peer_.rfind(':'));
    return id;
  }

  static std::string peer_name(const tcp::socket& socket) {
    error_code ec;
    auto endpoint = socket.remote_endpoint(ec);
    if (ec) return "unknown";
    return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
  }

  std::string peer_;
  Stream client_;
  Services& services_;
  monitoring::RelayStats& stats_; // this thread's batch of hot-path counters
  std::shared_ptr<const Runtime> runtime_;
  std::string user_;
  std::string application_name_; //!< as the client's startup packet set it
  std::string client_leftover_;
  std::optional<BackendSession> backend_;
  bool primary_released_ = false;               //!< backend_ kept for the next client or ended
  bool client_released_ = false;                //!< the client's side ended (release_client)
  std::optional<LoginRequest> secondary_login_; //!< set when writes are mirrored
  std::string primary_database_;                //!< the database of the primary's login
  std::string pool_key_; //!< set when the primary connection may be kept (BackendPool)
  uint32_t cancel_pid_ = 0;
  SessionActivity activity_;
  ActiveClient active_{services_};
};

} // namespace

asio::awaitable<void> serve_client(tcp::socket socket, Services& services) {
  ClientSession session(std::move(socket), services);
  co_await session.run();
}

} // namespace switchyard::proxy
