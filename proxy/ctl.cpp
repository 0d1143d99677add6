#include "proxy/ctl.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include <chrono>
#include <iostream>

#include "config/config.hpp"
#include "proxy/asio.hpp"

namespace switchyard::proxy {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

struct Answer {
  unsigned status = 0;
  std::string body;
};

template <class Stream> Answer exchange(Stream& stream, http::request<http::string_body>& out) {
  http::write(stream, out);
  beast::flat_buffer buffer;
  http::response<http::string_body> in;
  http::read(stream, buffer, in);
  return Answer{in.result_int(), in.body()};
}

Result<Answer> call(const CtlRequest& request, http::verb method, const std::string& target,
                    const std::string& body) {
  constexpr std::string_view kHttps = "https://";
  std::string_view admin = request.admin;
  bool https = admin.starts_with(kHttps);
  if (https) admin.remove_prefix(kHttps.size());
  auto address = config::parse_listen_address(admin);
  if (!address) return Error{"--admin: " + address.error()};
  http::request<http::string_body> out{method, target, 11};
  out.set(http::field::host, address->host);
  out.set(http::field::user_agent, "switchyard-ctl");
  if (!request.token.empty()) out.set(http::field::authorization, "Bearer " + request.token);
  if (!body.empty()) {
    out.set(http::field::content_type, "application/json");
    out.body() = body;
  }
  out.prepare_payload();
  try {
    asio::io_context io;
    tcp::resolver resolver(io);
    auto endpoints = resolver.resolve(address->host, std::to_string(address->port));
    if (!https) {
      beast::tcp_stream stream(io);
      stream.expires_after(std::chrono::seconds(10));
      stream.connect(endpoints);
      return exchange(stream, out);
    }
    ssl::context tls(ssl::context::tls_client);
    if (request.ca_file.empty()) {
      tls.set_default_verify_paths();
    } else {
      tls.load_verify_file(request.ca_file);
    }
    tls.set_verify_mode(ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(io, tls);
    stream.set_verify_callback(ssl::host_name_verification(address->host));
    SSL_set_tlsext_host_name(stream.native_handle(), address->host.c_str());
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
    beast::get_lowest_layer(stream).connect(endpoints);
    stream.handshake(ssl::stream_base::client);
    return exchange(stream, out);
  } catch (const boost::system::system_error& e) {
    return Error{"cannot reach the admin API at " + request.admin + ": " + e.code().message()};
  }
}

std::string number(const json::value& value) {
  if (value.is_int64()) return std::to_string(value.get_int64());
  if (value.is_uint64()) return std::to_string(value.get_uint64());
  if (value.is_double()) return fmt::format("{:.4g}", value.get_double());
  return "-";
}

std::string describe_state(const json::object& state) {
  std::string phase(state.at("phase").get_string());
  std::string text = phase;
  if (phase == "ramping") text += " at " + number(state.at("read_percent")) + " %";
  if (state.at("paused").get_bool() && phase == "ramping") text += ", paused";
  return text + " (version " + number(state.at("version")) + ")";
}

void print_status(const json::object& status) {
  const json::object& state = status.at("state").get_object();
  std::cout << fmt::format("{:<9} {}\n", "cutover", describe_state(state));
  std::cout << fmt::format("{:<9} reads on the new database: {} %\n", "",
                           number(status.at("reads_on_new_database_percent")));
  std::cout << fmt::format("{:<9} last change by {}: {}\n", "", state.at("actor").get_string(),
                           state.at("reason").get_string());
  const json::object& roles = status.at("roles").get_object();
  std::cout << fmt::format("{:<9} primary of record: the {} database{}\n", "roles",
                           roles.at("primary_of_record").get_string(),
                           roles.at("settled").get_bool()
                               ? ""
                               : fmt::format(" (swapping: {} sessions with the old roles left)",
                                             number(roles.at("stale_sessions"))));
  const json::object& ramp = status.at("ramp").get_object();
  std::string steps;
  for (const auto& step : ramp.at("steps").get_array())
    steps += number(step) + " ";
  std::cout << fmt::format("{:<9} steps {}| soak {} s | auto_advance {}", "ramp", steps,
                           number(ramp.at("soak_seconds")),
                           ramp.at("auto_advance").get_bool() ? "on" : "off");
  if (const json::value* next = ramp.if_contains("next_step")) {
    std::cout << " | next " << number(*next) << " %";
  }
  std::cout << "\n";
  const json::object& fleet = status.at("fleet").get_object();
  if (fleet.at("enabled").get_bool()) {
    std::cout << fmt::format("{:<9} Redis {} ({} changes waiting to be shared)\n", "fleet",
                             fleet.at("connected").get_bool() ? "connected" : "AWAY",
                             number(fleet.at("unpublished_changes")));
    for (const auto& item : fleet.at("members").get_array()) {
      const json::object& member = item.get_object();
      bool same = member.at("version") == state.at("version");
      std::cout << fmt::format("{:<9} {:<24} {} at {} % (version {}){}\n", "",
                               member.at("proxy").get_string(), member.at("phase").get_string(),
                               number(member.at("read_percent")), number(member.at("version")),
                               same ? "" : "  <- differs from this proxy");
    }
  } else {
    std::cout << fmt::format("{:<9} none (state in the local state file)\n", "fleet");
  }
  bool first = true;
  for (const auto& item : status.at("gates").get_array()) {
    const json::object& gate = item.get_object();
    std::cout << fmt::format(
        "{:<9} {:<24} {:>10} / {:<8} {:<16} {} samples (min {}){}\n", first ? "gates" : "",
        gate.at("name").get_string(), number(gate.at("value")), number(gate.at("threshold")),
        gate.at("verdict").get_string(), number(gate.at("samples")), number(gate.at("min_samples")),
        gate.at("judged").get_bool() ? "" : "  (not judged in this phase)");
    first = false;
  }
  if (first) std::cout << fmt::format("{:<9} not evaluated yet\n", "gates");
}

} // namespace

int run_ctl(const CtlRequest& request) {
  http::verb method = http::verb::post;
  std::string target;
  json::object body;
  if (request.command == "status") {
    method = http::verb::get;
    target = "/api/v1/status";
  } else if (request.command == "reload") {
    target = "/api/v1/reload";
  } else {
    target = "/api/v1/cutover/" + request.command;
    if (request.percent) body["percent"] = *request.percent;
    if (!request.reason.empty()) body["reason"] = request.reason;
    if (!request.actor.empty()) body["actor"] = request.actor;
  }
  auto answer = call(request, method, target, body.empty() ? "" : json::serialize(body));
  if (!answer) {
    std::cerr << "switchyard ctl: " << answer.error() << "\n";
    return 2;
  }
  json::error_code ec;
  json::value document = json::parse(answer->body, ec);
  if (ec || !document.is_object()) {
    std::cerr << "switchyard ctl: unexpected answer (HTTP " << answer->status
              << "): " << answer->body << "\n";
    return 2;
  }
  const json::object& object = document.get_object();
  if (answer->status != 200) {
    const json::value* error = object.if_contains("error");
    std::cerr << "switchyard ctl: refused (HTTP " << answer->status
              << "): " << (error && error->is_string() ? error->get_string().c_str() : "?") << "\n";
    return 1;
  }
  if (request.json) {
    std::cout << answer->body;
    return 0;
  }
  try {
    if (request.command == "status") {
      print_status(object);
    } else if (request.command == "reload") {
      std::cout << "config reloaded from " << object.at("reloaded_from").get_string().c_str()
                << "\n";
    } else {
      std::cout << "cutover now " << describe_state(object.at("state").get_object()) << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "switchyard ctl: unexpected answer: " << e.what() << "\n";
    return 2;
  }
  return 0;
}

} // namespace switchyard::proxy
