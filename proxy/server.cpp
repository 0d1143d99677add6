#include "proxy/server.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>

#include "monitoring/logging.hpp"
#include "monitoring/relay_stats.hpp"
#include "proxy/admin_server.hpp"
#include "proxy/client_session.hpp"
#include "proxy/journal_replayer.hpp"
#include "proxy/role_swap.hpp"
#include "proxy/spawn.hpp"
#include "proxy/sqlite_engine.hpp"

namespace switchyard::proxy {
namespace {

size_t worker_count(const config::Config& config) {
  if (config.workers > 0) return config.workers;
  return std::max(1u, std::thread::hardware_concurrency());
}

Status open_acceptor(tcp::acceptor& acceptor, const config::ListenAddress& address,
                     std::string_view what) {
  error_code ec;
  auto ip = asio::ip::make_address(address.host == "localhost" ? "127.0.0.1" : address.host, ec);
  if (ec) return Error{std::string(what) + ": invalid address '" + address.host + "'"};
  tcp::endpoint endpoint(ip, address.port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Error{std::string(what) + ": cannot listen on " + address.to_string() + ": " +
                 ec.message()};
  return Ok{};
}

// Names this proxy in audit entries and the fleet: host name and client port.
std::string proxy_id(const config::Config& config) {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "unknown-host");
  return std::string(host) + ":" + std::to_string(config.listen.port);
}

} // namespace

Server::Server(std::optional<std::string> config_file, config::Overrides overrides,
               std::shared_ptr<const Runtime> runtime)
    : config_file_(std::move(config_file)), overrides_(std::move(overrides)),
      services_(runtime, metrics_), cutover_(services_, proxy_id(*runtime->config)), contexts_([&] {
        std::vector<std::unique_ptr<asio::io_context>> contexts;
        for (size_t i = 0; i < worker_count(*runtime->config); ++i) {
          contexts.push_back(std::make_unique<asio::io_context>(1));
        }
        return contexts;
      }()),
      relay_loops_(metrics_, contexts_.size()), client_acceptor_(*contexts_[0]),
      admin_acceptor_(admin_context_), signals_(*contexts_[0], SIGHUP, SIGINT, SIGTERM) {}

Server::~Server() {
  stop();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  // Its last wake-ups of sessions are posted to the contexts while they still exist.
  if (backfill::DivergenceJournal* journal = services_.journal()) journal->stop_flusher();
}

Status Server::bind() {
  auto runtime = services_.loaded_runtime();
  const config::Config& config = *runtime->config;
  if (config.secondary) {
    if (auto s = services_.open_journal(config.mirror.journal_path); !s) return s;
  }
  // SQLite files open now, so a path that cannot be used fails the start, not the first client.
  for (const auto* target : {&config.primary, config.secondary ? &*config.secondary : nullptr}) {
    if (target == nullptr || target->kind != config::BackendKind::kSqlite) continue;
    auto database = SqliteEngine::instance().database(*target);
    if (!database) return Error{database.error()};
  }
  if (auto s = cutover_.start(config); !s) return s;
  if (auto s = open_acceptor(client_acceptor_, config.listen, "listen"); !s) return s;
  return open_acceptor(admin_acceptor_, config.admin_listen, "admin.listen");
}

void Server::run() {
  auto runtime = services_.runtime(); // as the cutover oriented it
  const config::Config& config = *runtime->config;
  services_.set_relay_loops(&relay_loops_); // before the first session can start
  relay_loops_.start();
  spawn(contexts_[0]->get_executor(), accept_clients(), "client listener");
  AdminContext admin{services_, cutover_, [this] { return reload(); }};
  spawn(admin_context_.get_executor(), serve_admin(std::move(admin_acceptor_), std::move(admin)),
        "admin listener");
  spawn(admin_context_.get_executor(), cutover_.run_gates(), "cutover gates");
  spawn(admin_context_.get_executor(), settle_role_swaps(services_), "role swaps");
  spawn(admin_context_.get_executor(), expire_pooled_backends(), "kept primary connections");
  spawn(contexts_[0]->get_executor(), handle_signals(), "signal handler");
  spawn(contexts_[0]->get_executor(), replay_journal(services_), "journal replayer");
  for (auto& context : contexts_) {
    spawn(context->get_executor(), flush_relay_stats(), "relay stats flusher");
  }
  spdlog::info(
      "switchyard {} listening on {} (admin, /metrics on {}), primary {}, {} network threads",
      SWITCHYARD_VERSION, config.listen.to_string(), config.admin_listen.to_string(),
      config.primary.redacted, contexts_.size());
  if (config.secondary) {
    spdlog::info("mirroring writes ({}) to secondary {} (journal {})",
                 config.write_mode == config::WriteMode::kAsync ? "async" : "sync",
                 config.secondary->redacted, config.mirror.journal_path);
  }
  spdlog::info("connect with: psql -h {} -p {}", config.listen.host, config.listen.port);
  threads_.emplace_back([this] {
    auto guard = asio::make_work_guard(admin_context_);
    admin_context_.run();
  });
  for (size_t i = 1; i < contexts_.size(); ++i) {
    threads_.emplace_back([this, i] {
      auto guard = asio::make_work_guard(*contexts_[i]);
      contexts_[i]->run();
    });
  }
  contexts_[0]->run();
}

void Server::stop() {
  relay_loops_.stop();
  for (auto& context : contexts_)
    context->stop();
  admin_context_.stop();
}

asio::awaitable<void> Server::accept_clients() {
  size_t next = 0;
  while (true) {
    asio::io_context& target = *contexts_[next++ % contexts_.size()];
    auto [ec, socket] = co_await client_acceptor_.async_accept(target, use_tuple);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of file descriptors and the like: log, breathe, go on accepting.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer pause(client_acceptor_.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    spawn(target.get_executor(), serve_client(std::move(socket), services_), "client session");
  }
}

// Closes kept primary connections past limits.pooled_backend_idle_timeout, or beyond
// limits.pooled_backends after a reload lowered it.
asio::awaitable<void> Server::expire_pooled_backends() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (true) {
    timer.expires_after(std::chrono::seconds(1));
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (ec) co_return;
    auto runtime = services_.loaded_runtime();
    const config::Limits& limits = runtime->config->limits;
    auto& pool = services_.backend_pool();
    pool.expire(limits.pooled_backend_idle_timeout, limits.pooled_backends);
    services_.metrics().backend_pool_idle().Set(static_cast<double>(pool.size()));
  }
}

// Runs on every network thread: moves that thread's batched relay counters into /metrics.
asio::awaitable<void> Server::flush_relay_stats() {
  auto& stats = monitoring::RelayStats::for_this_thread(services_.metrics());
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (true) {
    timer.expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await timer.async_wait(use_tuple);
    stats.flush();
    if (ec) co_return;
  }
}

asio::awaitable<void> Server::handle_signals() {
  while (true) {
    auto [ec, signal] = co_await signals_.async_wait(use_tuple);
    if (ec) co_return;
    if (signal == SIGHUP) {
      if (auto s = reload(); !s)
        spdlog::error("config reload rejected, keeping the running config: {}", s.error());
      continue;
    }
    spdlog::info("signal {} received, shutting down", signal);
    stop();
    co_return;
  }
}

Status Server::reload() {
  std::lock_guard lock(reload_mutex_);
  auto& metrics = services_.metrics();
  auto config = config::load_config(config_file_, overrides_);
  if (!config) {
    metrics.config_reloads(false).Increment();
    return Error{config.error()};
  }
  auto runtime = build_runtime(*config);
  if (!runtime) {
    metrics.config_reloads(false).Increment();
    return Error{runtime.error()};
  }
  if ((*runtime)->config->secondary) {
    if (auto s = services_.open_journal((*runtime)->config->mirror.journal_path); !s) {
      metrics.config_reloads(false).Increment();
      return s;
    }
  }
  auto current = services_.loaded_runtime();
  for (const auto& setting : config::restart_only_changes(*current->config, *(*runtime)->config)) {
    spdlog::warn("config reload: {} changed but takes effect only after a restart", setting);
  }
  monitoring::set_log_level((*runtime)->config->log_level);
  services_.set_runtime(*runtime);
  cutover_.config_reloaded(*current->config, *(*runtime)->config);
  metrics.config_reloads(true).Increment();
  spdlog::info("config reloaded from {}; new sessions use it, open sessions keep theirs",
               (*runtime)->config->source);
  return Ok{};
}

} // namespace switchyard::proxy
