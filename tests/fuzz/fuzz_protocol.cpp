// libFuzzer target for everything that reads untrusted bytes in protocol/: the whole-message
// decoder, the streaming scanner (split at a point the input chooses), startup packets, error
// bodies, extended-protocol and row messages, the SQL lexer behind the classification cache,
// the classifier and the row-image rewrite, the value codecs the SQLite engine decodes
// parameters with, and the SCRAM server. It must never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/auth.hpp"
#include "protocol/classify.hpp"
#include "protocol/extended.hpp"
#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "protocol/pg_values.hpp"
#include "protocol/row_image.hpp"
#include "protocol/startup.hpp"

using namespace switchyard::protocol;

namespace {

void decode_all(std::string_view bytes, Direction direction) {
  while (true) {
    auto result = decode_frame(bytes, direction, 1 << 16);
    if (result.status != DecodeStatus::kMessage) return;
    std::string_view body = result.frame.body;
    switch (direction == Direction::kBackend ? result.frame.tag : 0) {
    case 'E':
    case 'N': (void)parse_error(body); break;
    case 'T': (void)parse_row_description(body); break;
    case 'D':
      if (auto values = parse_data_row(body)) {
        std::string prefix;
        append_data_row_prefix(prefix, body, values->size() / 2);
      }
      break;
    default: break;
    }
    switch (direction == Direction::kFrontend ? result.frame.tag : 0) {
    case 'P': (void)parse_parse(body); break;
    case 'B': (void)parse_bind(body); break;
    case 'E': (void)parse_execute(body); break;
    case 'D':
    case 'C': (void)parse_target(body); break;
    default: break;
    }
    bytes.remove_prefix(result.consumed);
  }
}

void scan_split(std::string_view bytes, Direction direction, size_t cut) {
  FrameScanner scanner(direction, 1 << 16);
  size_t events = 0;
  auto sink = [&](const FrameScanner::Event& e) {
    if (e.peek.size() > FrameScanner::kPeekBytes) __builtin_trap();
    ++events;
  };
  cut = bytes.empty() ? 0 : cut % bytes.size();
  if (scanner.scan(bytes.substr(0, cut), sink)) return;
  (void)scanner.scan(bytes.substr(cut), sink);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t cut = data[0];
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  decode_all(bytes, Direction::kFrontend);
  decode_all(bytes, Direction::kBackend);
  scan_split(bytes, Direction::kFrontend, cut);
  scan_split(bytes, Direction::kBackend, cut * 7);
  (void)parse_startup_packet(bytes);
  QueryShape shape = query_shape(bytes);
  size_t end = 0;
  for (const StatementSpan& span : shape.spans) {
    if (span.offset < end || span.offset + span.length > bytes.size()) __builtin_trap();
    end = span.offset + span.length;
  }
  // Any text is classified without a crash or an exception, however deeply it nests, and the
  // row-image rewrite of a write that parsed parses too, as the same kind of statement.
  Classification classification = classify(bytes);
  for (const Statement& statement : classification.statements) {
    if (statement.offset + statement.length > bytes.size()) __builtin_trap();
    if (!classification.error.empty() || statement.mirror != MirrorPlan::kRowImage) continue;
    Classification rewritten =
        classify(with_row_image(bytes.substr(statement.offset, statement.length), statement));
    if (!rewritten.error.empty() || rewritten.statements.size() != 1 ||
        rewritten.statements[0].node != statement.node) {
      __builtin_trap();
    }
  }
  (void)fingerprint(bytes);
  (void)valid_utf8(bytes);
  (void)parse_int8(bytes);
  (void)parse_float8(bytes);
  (void)parse_bool(bytes);
  (void)decode_int_binary(bytes);
  (void)decode_float_binary(bytes);
  if (auto decoded = decode_bytea_text(bytes)) {
    // What the engine sends back must read back as the same bytes.
    auto again = decode_bytea_text(encode_bytea_hex(*decoded));
    if (!again || *again != *decoded) __builtin_trap();
  }
  if (auto stamp = timestamptz_from_iso8601(bytes)) {
    if (!iso8601_from_timestamptz(*stamp)) __builtin_trap(); // our output must parse again
  }
  ScramServer server(ScramSecret{1, "salt", std::string(32, 'k'), std::string(32, 's')});
  size_t comma = bytes.find('|');
  if (server.handle_client_first(bytes.substr(0, comma)) && comma != std::string_view::npos) {
    (void)server.handle_client_final(bytes.substr(comma + 1));
  }
  return 0;
}
