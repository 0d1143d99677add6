#include "routing/cutover.hpp"

#include <array>
#include <cmath>
#include <utility>

#include "protocol/json.hpp"

namespace switchyard::routing {
namespace {

namespace json = boost::json;

constexpr std::array<std::pair<CutoverPhase, std::string_view>, 6> kPhases = {{
    {CutoverPhase::kPrimaryOnly, "primary_only"},
    {CutoverPhase::kMirroring, "mirroring"},
    {CutoverPhase::kRamping, "ramping"},
    {CutoverPhase::kPromoted, "promoted"},
    {CutoverPhase::kFinalized, "finalized"},
    {CutoverPhase::kReverted, "reverted"},
}};

constexpr std::array<std::pair<CutoverAction, std::string_view>, 8> kActions = {{
    {CutoverAction::kStartMirroring, "start_mirroring"},
    {CutoverAction::kRamp, "ramp"},
    {CutoverAction::kPause, "pause"},
    {CutoverAction::kResume, "resume"},
    {CutoverAction::kPromote, "promote"},
    {CutoverAction::kFinalize, "finalize"},
    {CutoverAction::kRevert, "revert"},
    {CutoverAction::kRearm, "rearm"},
}};

// Why `action` is not allowed in `phase`, or empty when it is.
std::string refusal(const CutoverState& state, const CutoverCommand& command) {
  CutoverPhase phase = state.phase;
  auto refuse = [&](std::string_view needs) {
    return std::string("cannot ") + to_string(command.action) + " while " + to_string(phase) +
           ": " + std::string(needs);
  };
  switch (command.action) {
  case CutoverAction::kStartMirroring:
    return phase == CutoverPhase::kPrimaryOnly ? "" : refuse("mirroring starts from primary_only");
  case CutoverAction::kRamp:
    if (!(command.percent >= 0 && command.percent <= 100)) {
      return "cannot ramp to " + std::to_string(command.percent) + " %: must be from 0 to 100";
    }
    return phase == CutoverPhase::kMirroring || phase == CutoverPhase::kRamping
               ? ""
               : refuse("ramping starts from mirroring or ramping");
  case CutoverAction::kPause:
  case CutoverAction::kResume:
    return phase == CutoverPhase::kRamping ? "" : refuse("only a ramp pauses and resumes");
  case CutoverAction::kPromote:
    if (phase == CutoverPhase::kRamping && state.read_percent >= 100) return "";
    return refuse("promote needs ramping at 100 %");
  case CutoverAction::kFinalize:
    return phase == CutoverPhase::kPromoted ? "" : refuse("finalize needs promoted");
  case CutoverAction::kRevert:
    return phase == CutoverPhase::kMirroring || phase == CutoverPhase::kRamping ||
                   phase == CutoverPhase::kPromoted
               ? ""
               : refuse("revert is possible from mirroring, ramping or promoted");
  case CutoverAction::kRearm:
    return phase == CutoverPhase::kReverted ? "" : refuse("only a reverted cutover is re-armed");
  }
  return "unknown action";
}

} // namespace

const char* to_string(CutoverPhase phase) {
  for (const auto& [value, name] : kPhases) {
    if (value == phase) return name.data();
  }
  return "unknown";
}

const char* to_string(CutoverAction action) {
  for (const auto& [value, name] : kActions) {
    if (value == action) return name.data();
  }
  return "unknown";
}

Result<CutoverAction> parse_cutover_action(std::string_view name) {
  for (const auto& [value, known] : kActions) {
    if (known == name) return value;
  }
  return Error{"unknown action '" + std::string(name) +
               "' (start_mirroring, ramp, pause, resume, promote, finalize, revert, rearm)"};
}

Result<CutoverState> apply_cutover(const CutoverState& current, const CutoverCommand& command,
                                   int64_t now_ms) {
  if (std::string why = refusal(current, command); !why.empty()) return Error{why};
  CutoverState next = current;
  switch (command.action) {
  case CutoverAction::kStartMirroring: next.phase = CutoverPhase::kMirroring; break;
  case CutoverAction::kRamp:
    next.phase = CutoverPhase::kRamping;
    next.read_percent = command.percent;
    break;
  case CutoverAction::kPause: next.paused = true; break;
  case CutoverAction::kResume: next.paused = false; break;
  case CutoverAction::kPromote: next.phase = CutoverPhase::kPromoted; break;
  case CutoverAction::kFinalize: next.phase = CutoverPhase::kFinalized; break;
  case CutoverAction::kRevert:
    // Reads back on the old primary, the ramp frozen; mirroring goes on so nothing diverges.
    next.phase = CutoverPhase::kReverted;
    next.read_percent = 0;
    next.paused = true;
    break;
  case CutoverAction::kRearm:
    next.phase = CutoverPhase::kMirroring;
    next.paused = false;
    break;
  }
  ++next.version;
  next.changed_at_ms = now_ms;
  next.actor = command.actor;
  next.reason = command.reason;
  return next;
}

double cutover_read_percent(const CutoverState& state) {
  switch (state.phase) {
  case CutoverPhase::kRamping: return state.read_percent;
  case CutoverPhase::kPromoted:
  case CutoverPhase::kFinalized: return 100;
  default: return 0;
  }
}

bool roles_swapped(CutoverPhase phase) {
  return phase == CutoverPhase::kPromoted || phase == CutoverPhase::kFinalized;
}

std::string to_json(const CutoverState& state) {
  json::object out;
  out["phase"] = to_string(state.phase);
  out["read_percent"] = json_number(state.read_percent);
  out["paused"] = state.paused;
  out["version"] = state.version;
  out["changed_at_ms"] = state.changed_at_ms;
  out["actor"] = state.actor;
  out["reason"] = state.reason;
  return json::serialize(out);
}

Result<CutoverState> cutover_from_json(std::string_view text) {
  json::error_code ec;
  json::value parsed = json::parse(text, ec);
  if (ec || !parsed.is_object()) return Error{"the cutover state is not a JSON object"};
  const json::object& in = parsed.get_object();
  CutoverState state;
  const json::value* phase = in.if_contains("phase");
  if (phase == nullptr || !phase->is_string()) return Error{"the cutover state has no phase"};
  bool known = false;
  for (const auto& [value, name] : kPhases) {
    if (phase->get_string() == name) {
      state.phase = value;
      known = true;
    }
  }
  if (!known) return Error{"unknown cutover phase '" + std::string(phase->get_string()) + "'"};
  const json::value* percent = in.if_contains("read_percent");
  const json::value* paused = in.if_contains("paused");
  const json::value* version = in.if_contains("version");
  const json::value* changed = in.if_contains("changed_at_ms");
  const json::value* actor = in.if_contains("actor");
  const json::value* reason = in.if_contains("reason");
  if (percent == nullptr || !percent->is_number() || paused == nullptr || !paused->is_bool() ||
      version == nullptr || !version->is_number() || changed == nullptr || !changed->is_number() ||
      actor == nullptr || !actor->is_string() || reason == nullptr || !reason->is_string()) {
    return Error{"the cutover state lacks read_percent, paused, version, changed_at_ms, actor "
                 "or reason"};
  }
  json::error_code number_error;
  state.read_percent = percent->to_number<double>(number_error);
  state.version = version->to_number<uint64_t>(number_error);
  state.changed_at_ms = changed->to_number<int64_t>(number_error);
  if (number_error) return Error{"the cutover state has a number out of range"};
  state.paused = paused->get_bool();
  state.actor = std::string(actor->get_string());
  state.reason = std::string(reason->get_string());
  if (!(state.read_percent >= 0 && state.read_percent <= 100)) {
    return Error{"the cutover state's read_percent is outside 0-100"};
  }
  return state;
}

} // namespace switchyard::routing
