#include "proxy/admin_api.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

namespace switchyard::proxy {
namespace {

namespace json = boost::json;
using Response = http::response<http::string_body>;

constexpr std::string_view kCutoverPrefix = "/api/v1/cutover/";

Response reply(const http::request<http::string_body>& request, http::status status,
               std::string body) {
  Response response{status, request.version()};
  response.set(http::field::server, "switchyard");
  response.set(http::field::content_type, "application/json");
  response.keep_alive(request.keep_alive());
  response.body() = std::move(body);
  response.body() += '\n';
  response.prepare_payload();
  return response;
}

Response error(const http::request<http::string_body>& request, http::status status,
               std::string_view why) {
  json::object body;
  body["error"] = why;
  return reply(request, status, json::serialize(body));
}

// Compares in constant time, so response timing does not reveal how much of a guess was right.
bool token_matches(std::string_view given, const std::string& expected) {
  return given.size() == expected.size() &&
         CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

// Null when the request may go on; else the refusal.
std::optional<Response> refuse_unauthorized(const http::request<http::string_body>& request,
                                            const std::string& token) {
  if (token.empty()) {
    return error(request, http::status::forbidden,
                 "the admin API is disabled: set admin.token in the config");
  }
  std::string_view header = request[http::field::authorization];
  constexpr std::string_view kBearer = "Bearer ";
  if (header.empty()) {
    auto response = error(request, http::status::unauthorized,
                          "missing Authorization: Bearer <admin.token> header");
    response.set(http::field::www_authenticate, "Bearer");
    return response;
  }
  if (!header.starts_with(kBearer) || !token_matches(header.substr(kBearer.size()), token)) {
    spdlog::warn("admin API: refused a request to {} with a wrong token",
                 std::string(request.target()));
    auto response = error(request, http::status::unauthorized, "wrong bearer token");
    response.set(http::field::www_authenticate, "Bearer error=\"invalid_token\"");
    return response;
  }
  return std::nullopt;
}

Response cutover_action(const http::request<http::string_body>& request, std::string_view name,
                        AdminContext& context) {
  auto action = routing::parse_cutover_action(name);
  if (!action) return error(request, http::status::not_found, action.error());
  routing::CutoverCommand command;
  bool has_percent = false;
  command.action = *action;
  command.actor = "admin";
  command.reason = "requested through the admin API";
  if (!request.body().empty()) {
    json::error_code ec;
    json::value body = json::parse(request.body(), ec);
    if (ec || !body.is_object()) {
      return error(request, http::status::bad_request, "the body must be a JSON object");
    }
    const json::object& fields = body.get_object();
    for (const auto& [key, value] : fields) {
      if (key == "percent" && value.is_number()) {
        command.percent = value.to_number<double>(ec);
        has_percent = true;
      } else if (key == "reason" && value.is_string()) {
        command.reason = std::string(value.get_string());
      } else if (key == "actor" && value.is_string() && !value.get_string().empty()) {
        command.actor = "admin:" + std::string(value.get_string());
      } else {
        return error(request, http::status::bad_request,
                     "unexpected field '" + std::string(key) +
                         "': the body may hold percent (number), reason and actor (strings)");
      }
    }
  }
  if (command.action == routing::CutoverAction::kRamp && !has_percent) {
    return error(request, http::status::bad_request, "ramp needs {\"percent\": 0-100}");
  }
  auto applied = context.cutover.apply(command);
  if (!applied) return error(request, http::status::conflict, applied.error());
  return reply(request, http::status::ok, "{\"state\":" + routing::to_json(*applied) + "}");
}

std::string html_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
    case '&': out += "&amp;"; break;
    case '<': out += "&lt;"; break;
    case '>': out += "&gt;"; break;
    case '"': out += "&quot;"; break;
    case '\'': out += "&#39;"; break;
    default: out += c;
    }
  }
  return out;
}

std::string text_of(const json::value& value) {
  if (value.is_string()) return html_escape(value.get_string());
  if (value.is_double()) return fmt::format("{:.4g}", value.get_double());
  return html_escape(json::serialize(value));
}

} // namespace

std::string status_page(AdminContext& context) {
  json::value status = json::parse(context.cutover.status_json());
  const json::object& all = status.get_object();
  const json::object& state = all.at("state").get_object();
  std::string page =
      "<!doctype html><html><head><meta charset=\"utf-8\"><title>switchyard</title>"
      "<meta http-equiv=\"refresh\" content=\"5\"><style>body{font-family:sans-serif;"
      "margin:2em}td,th{padding:.2em .8em;text-align:left}.breached{color:#b00}"
      ".holds{color:#070}</style></head><body><h1>switchyard " +
      text_of(all.at("proxy")) + "</h1>";
  page +=
      "<p>Cutover: <b>" + text_of(state.at("phase")) + "</b>, reads on the new database: <b>" +
      text_of(all.at("reads_on_new_database_percent")) + " %</b>" +
      (state.at("paused").get_bool() && state.at("phase") == "ramping" ? " (ramp paused)" : "") +
      ", version " + text_of(state.at("version")) + ", primary of record: the " +
      text_of(all.at("roles").as_object().at("primary_of_record")) + " database.</p>";
  page += "<p>Last change by " + text_of(state.at("actor")) + ": " + text_of(state.at("reason")) +
          "</p><table><tr><th>gate</th><th>value</th><th>limit</th><th>samples</th>"
          "<th>minimum</th><th>verdict</th><th>judged now</th></tr>";
  for (const auto& item : all.at("gates").get_array()) {
    const json::object& gate = item.get_object();
    std::string verdict = text_of(gate.at("verdict"));
    page += "<tr><td>" + text_of(gate.at("name")) + "</td><td>" + text_of(gate.at("value")) +
            "</td><td>" + text_of(gate.at("threshold")) + "</td><td>" +
            text_of(gate.at("samples")) + "</td><td>" + text_of(gate.at("min_samples")) +
            "</td><td class=\"" + verdict + "\">" + verdict + "</td><td>" +
            (gate.at("judged").get_bool() ? "yes" : "no") + "</td></tr>";
  }
  page += "</table><p>Machine-readable: <a href=\"/metrics\">/metrics</a>; actions: "
          "<code>switchyard ctl</code> or the admin API (bearer token).</p></body></html>\n";
  return page;
}

Response handle_api(const http::request<http::string_body>& request, AdminContext& context) {
  auto runtime = context.services.runtime();
  if (auto refusal = refuse_unauthorized(request, runtime->config->admin_token)) {
    return std::move(*refusal);
  }
  std::string_view target = request.target();
  target = target.substr(0, target.find('?'));
  bool get = request.method() == http::verb::get;
  bool post = request.method() == http::verb::post;
  if (target == "/api/v1/status") {
    if (!get) return error(request, http::status::method_not_allowed, "status takes GET");
    return reply(request, http::status::ok, context.cutover.status_json());
  }
  if (target == "/api/v1/reload") {
    if (!post) return error(request, http::status::method_not_allowed, "reload takes POST");
    if (auto reloaded = context.reload(); !reloaded) {
      return error(request, http::status::bad_request,
                   "config rejected, the running one stays: " + reloaded.error());
    }
    json::object body;
    body["reloaded_from"] = context.services.runtime()->config->source;
    return reply(request, http::status::ok, json::serialize(body));
  }
  if (target.starts_with(kCutoverPrefix)) {
    if (!post) return error(request, http::status::method_not_allowed, "cutover actions take POST");
    return cutover_action(request, target.substr(kCutoverPrefix.size()), context);
  }
  return error(request, http::status::not_found,
               "unknown endpoint: try GET /api/v1/status, POST /api/v1/cutover/<action>, "
               "POST /api/v1/reload");
}

} // namespace switchyard::proxy
