#include <catch2/catch.hpp>

#include "routing/cutover.hpp"

using namespace switchyard::routing;

namespace {

CutoverState step(const CutoverState& state, CutoverAction action, double percent = 0) {
  auto next = apply_cutover(state, CutoverCommand{action, percent, "admin:test", "step"}, 1000);
  REQUIRE(next);
  return *next;
}

std::string refused(const CutoverState& state, CutoverAction action, double percent = 0) {
  auto next = apply_cutover(state, CutoverCommand{action, percent, "admin:test", ""}, 1000);
  REQUIRE_FALSE(next);
  return next.error();
}

} // namespace

TEST_CASE("a cutover walks primary_only -> mirroring -> ramping -> promoted -> finalized") {
  CutoverState state;
  state = step(state, CutoverAction::kStartMirroring);
  CHECK(state.phase == CutoverPhase::kMirroring);
  CHECK(cutover_read_percent(state) == 0);
  state = step(state, CutoverAction::kRamp, 10);
  state = step(state, CutoverAction::kRamp, 25);
  CHECK(state.phase == CutoverPhase::kRamping);
  CHECK(cutover_read_percent(state) == 25);
  state = step(state, CutoverAction::kPause);
  CHECK(state.paused);
  state = step(state, CutoverAction::kResume);
  CHECK_FALSE(state.paused);
  CHECK(refused(state, CutoverAction::kPromote) ==
        "cannot promote while ramping: promote needs ramping at 100 %");
  state = step(state, CutoverAction::kRamp, 100);
  state = step(state, CutoverAction::kPromote);
  CHECK(cutover_read_percent(state) == 100);
  state = step(state, CutoverAction::kFinalize);
  CHECK(state.phase == CutoverPhase::kFinalized);
  CHECK(state.version == 8);
  CHECK(state.actor == "admin:test");
  CHECK(state.changed_at_ms == 1000);
  CHECK(refused(state, CutoverAction::kRevert) ==
        "cannot revert while finalized: revert is possible from mirroring, ramping or promoted");
}

TEST_CASE("revert sends reads home, freezes the ramp and stays until re-armed") {
  for (auto before : {CutoverAction::kStartMirroring, CutoverAction::kRamp}) {
    CutoverState state = step(CutoverState{}, CutoverAction::kStartMirroring);
    if (before == CutoverAction::kRamp) state = step(state, CutoverAction::kRamp, 50);
    state = step(state, CutoverAction::kRevert);
    CHECK(state.phase == CutoverPhase::kReverted);
    CHECK(cutover_read_percent(state) == 0);
    CHECK(state.paused);
    CHECK(refused(state, CutoverAction::kRamp, 10) ==
          "cannot ramp while reverted: ramping starts from mirroring or ramping");
    CHECK(refused(state, CutoverAction::kRevert).starts_with("cannot revert while reverted"));
    state = step(state, CutoverAction::kRearm);
    CHECK(state.phase == CutoverPhase::kMirroring);
    CHECK_FALSE(state.paused);
  }
  CHECK(refused(CutoverState{}, CutoverAction::kRamp, 5) ==
        "cannot ramp while primary_only: ramping starts from mirroring or ramping");
  CutoverState mirroring = step(CutoverState{}, CutoverAction::kStartMirroring);
  CHECK(refused(mirroring, CutoverAction::kRamp, 101) ==
        "cannot ramp to 101.000000 %: must be from 0 to 100");
}

TEST_CASE("the state survives a JSON round trip and bad state text is refused") {
  CutoverState state =
      step(step(CutoverState{}, CutoverAction::kStartMirroring), CutoverAction::kRamp, 12.5);
  auto back = cutover_from_json(to_json(state));
  REQUIRE(back);
  CHECK(*back == state);
  CHECK(cutover_from_json("[]").error() == "the cutover state is not a JSON object");
  CHECK(cutover_from_json(R"({"phase":"sideways"})").error() == "unknown cutover phase 'sideways'");
  CHECK(cutover_from_json(R"({"phase":"ramping"})").error().starts_with("the cutover state lacks"));
  CHECK(parse_cutover_action("promote").value() == CutoverAction::kPromote);
  CHECK(parse_cutover_action("jump").error().starts_with("unknown action 'jump'"));
}
