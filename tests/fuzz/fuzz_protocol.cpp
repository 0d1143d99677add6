// libFuzzer target for everything that reads untrusted bytes in protocol/: the whole-message
// decoder, the streaming scanner (split at a point the input chooses), startup packets, error
// bodies and the SCRAM server. It must never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/auth.hpp"
#include "protocol/frame.hpp"
#include "protocol/messages.hpp"
#include "protocol/startup.hpp"

using namespace switchyard::protocol;

namespace {

void decode_all(std::string_view bytes, Direction direction) {
  while (true) {
    auto result = decode_frame(bytes, direction, 1 << 16);
    if (result.status != DecodeStatus::kMessage) return;
    if (result.frame.tag == 'E' || result.frame.tag == 'N') (void)parse_error(result.frame.body);
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
  ScramServer server(ScramSecret{1, "salt", std::string(32, 'k'), std::string(32, 's')});
  size_t comma = bytes.find('|');
  if (server.handle_client_first(bytes.substr(0, comma)) && comma != std::string_view::npos) {
    (void)server.handle_client_final(bytes.substr(comma + 1));
  }
  return 0;
}
