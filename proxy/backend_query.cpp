#include "proxy/backend_query.hpp"

#include "protocol/extended.hpp"
#include "protocol/messages.hpp"

namespace switchyard::proxy {

std::string quote_literal(std::string_view text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') quoted += '\'';
    quoted += c;
  }
  quoted += '\'';
  return quoted;
}

std::string describe_error(std::string_view body) {
  auto fields = protocol::parse_error(body);
  if (!fields) return "unreadable ErrorResponse";
  return fields->sqlstate + ": " + fields->message;
}

asio::awaitable<Result<QueryRows>> run_query(Stream& stream, MessageReader& reader,
                                             std::string_view sql) {
  std::string message;
  protocol::append_query(message, sql);
  if (auto ec = co_await stream.write_all(message); ec) co_return Error{ec.message()};
  QueryRows result;
  std::string error;
  while (true) {
    auto frame = co_await reader.read_frame();
    if (!frame) co_return Error{frame.error()};
    switch (frame->tag) {
    case 'T': result.rows.clear(); break;
    case 'D': {
      auto values = protocol::parse_data_row(frame->body);
      if (!values) co_return Error{values.error()};
      result.rows.push_back(std::move(*values));
      break;
    }
    case 'C':
      result.command_tag = std::string(frame->body.substr(0, frame->body.find('\0')));
      break;
    case 'E':
      if (error.empty()) error = describe_error(frame->body);
      break;
    case 'Z':
      if (!error.empty()) co_return Error{error};
      co_return result;
    default: break;
    }
  }
}

} // namespace switchyard::proxy
