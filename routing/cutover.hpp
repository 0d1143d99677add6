#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/result.hpp"

namespace switchyard::routing {

//! Where a cutover stands. `reverted` is reachable from mirroring, ramping and promoted.
enum class CutoverPhase { kPrimaryOnly, kMirroring, kRamping, kPromoted, kFinalized, kReverted };
const char* to_string(CutoverPhase phase);

//! The persisted cutover state. `version` grows by one with every transition, so proxies
//! sharing it (the fleet) can tell which of two states is newer.
struct CutoverState {
  CutoverPhase phase = CutoverPhase::kPrimaryOnly;
  double read_percent = 0; //!< reads on the new database while ramping
  bool paused = false;     //!< the ramp plan does not advance
  uint64_t version = 0;
  // The last transition: when (Unix ms), by whom (config reload, admin user, gate) and why.
  int64_t changed_at_ms = 0;
  std::string actor;
  std::string reason;
  bool operator==(const CutoverState&) const = default;
};

//! What an operator, the ramp plan or a gate asks for.
enum class CutoverAction {
  kStartMirroring, //!< primary_only -> mirroring
  kRamp,           //!< mirroring/ramping -> ramping at `percent`
  kPause,          //!< ramping: freeze the ramp plan
  kResume,         //!< ramping: let it advance again
  kPromote,        //!< ramping at 100 % -> promoted (roles swap)
  kFinalize,       //!< promoted -> finalized
  kRevert,         //!< mirroring/ramping/promoted -> reverted (reads back on the old primary)
  kRearm,          //!< reverted -> mirroring
};
const char* to_string(CutoverAction action);
//! Parses an action name as the admin API spells it ("ramp", "promote", ...).
Result<CutoverAction> parse_cutover_action(std::string_view name);

struct CutoverCommand {
  CutoverAction action = CutoverAction::kRamp;
  double percent = 0; //!< for kRamp, 0-100
  std::string actor;  //!< "config reload", "admin:alice", "gate:secondary_error_rate"
  std::string reason;
};

//! The state `command` leads to from `current` (version + 1, stamped with `now_ms`), or why
//! it is refused: "cannot promote while mirroring: promote needs ramping at 100 %".
Result<CutoverState> apply_cutover(const CutoverState& current, const CutoverCommand& command,
                                   int64_t now_ms);

//! The share of reads the new database answers in `state`: ramping's percent, 100 once
//! promoted or finalized, else 0.
double cutover_read_percent(const CutoverState& state);

//! Whether the new database is the primary of record in `phase` (promoted, finalized):
//! writes run on it first and are mirrored to the old one.
bool roles_swapped(CutoverPhase phase);

//! The state as one JSON object (for the state file, Redis and the admin API), and back.
std::string to_json(const CutoverState& state);
Result<CutoverState> cutover_from_json(std::string_view text);

} // namespace switchyard::routing
