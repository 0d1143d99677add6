#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "protocol/result.hpp"
#include "proxy/asio.hpp"
#include "proxy/cutover_controller.hpp"
#include "proxy/relay_loop.hpp"
#include "proxy/services.hpp"

namespace switchyard::proxy {

//! The running proxy: one io_context per network thread (a session lives on one thread, so
//! it needs no locks), the client listener, the admin listener and gates on their own thread,
//! and signal handling (SIGHUP reloads, SIGINT/SIGTERM stop).
class Server {
public:
  Server(std::optional<std::string> config_file, config::Overrides overrides,
         std::shared_ptr<const Runtime> runtime);
  ~Server();

  //! Binds both listeners; an address in use is an error naming it.
  Status bind();
  //! Serves until stopped by a signal or stop().
  void run();
  void stop();
  //! Re-reads the config; applies it if valid, else keeps the running one. Returns why not.
  Status reload();

private:
  asio::awaitable<void> accept_clients();
  asio::awaitable<void> handle_signals();
  asio::awaitable<void> flush_relay_stats();
  asio::awaitable<void> expire_pooled_backends();

  std::optional<std::string> config_file_;
  config::Overrides overrides_;
  monitoring::Metrics metrics_;
  Services services_;
  CutoverController cutover_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  // After the contexts: a session still on a loop at shutdown is dropped through its context.
  RelayLoops relay_loops_;
  // The admin API and the gates, on a thread of their own: a slow Redis or a large /metrics
  // never stalls a client session.
  asio::io_context admin_context_{1};
  std::vector<std::thread> threads_;
  std::mutex reload_mutex_; // SIGHUP (network thread 0) and the admin API may reload at once
  tcp::acceptor client_acceptor_;
  tcp::acceptor admin_acceptor_;
  asio::signal_set signals_;
};

} // namespace switchyard::proxy
