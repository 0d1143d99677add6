#include <catch2/catch.hpp>

#include "proxy/apply_groups.hpp"

namespace {

using switchyard::proxy::ApplyGroups;
using switchyard::proxy::GroupEntry;

// Stand-ins for two network threads' io_contexts: only their addresses are compared.
const char kThreadA = 'a';
const char kThreadB = 'b';

struct Commit : GroupEntry {
  Commit(const void* thread_context, size_t write_count, int commit_id)
      : GroupEntry(thread_context, write_count), id(commit_id) {}
  int id;
};

std::shared_ptr<GroupEntry> commit(const char& thread, int id, size_t writes = 2) {
  return std::make_shared<Commit>(&thread, writes, id);
}

std::vector<int> ids(const std::vector<std::shared_ptr<GroupEntry>>& group) {
  std::vector<int> out;
  out.reserve(group.size());
  for (const auto& entry : group)
    out.push_back(static_cast<const Commit&>(*entry).id);
  return out;
}

} // namespace

TEST_CASE("commits of one login from every thread gather into one group, the applier's first") {
  ApplyGroups groups;
  CHECK(groups.join("k", commit(kThreadA, 1))); // nobody applies: the caller starts an applier
  CHECK_FALSE(groups.join("k", commit(kThreadB, 2))); // these wait for it
  CHECK_FALSE(groups.join("k", commit(kThreadA, 3)));
  CHECK_FALSE(groups.join("k", commit(kThreadB, 4)));
  CHECK(groups.join("other login", commit(kThreadB, 5))); // a login of its own has its own

  auto turn = groups.next("k", &kThreadA, 64, 1024);
  CHECK(turn.elsewhere == nullptr);
  CHECK(ids(turn.group) == std::vector<int>{1, 2, 3, 4});
  // Drained: the applier ends, and the next commit starts another.
  turn = groups.next("k", &kThreadA, 64, 1024);
  CHECK(turn.group.empty());
  CHECK(turn.elsewhere == nullptr);
  CHECK(groups.join("k", commit(kThreadB, 6)));
  CHECK(ids(groups.next("other login", &kThreadB, 64, 1024).group) == std::vector<int>{5});
}

TEST_CASE("a group starts with the oldest commit of the applier's thread; without one the "
          "applier hands over to the oldest commit's thread") {
  ApplyGroups groups;
  CHECK(groups.join("k", commit(kThreadA, 1)));
  CHECK_FALSE(groups.join("k", commit(kThreadB, 2)));
  CHECK_FALSE(groups.join("k", commit(kThreadA, 3)));
  auto turn = groups.next("k", &kThreadB, 64, 1024);
  CHECK(ids(turn.group) == std::vector<int>{2, 1, 3});

  CHECK_FALSE(groups.join("k", commit(kThreadA, 4))); // the applier on B still serves the login
  CHECK_FALSE(groups.join("k", commit(kThreadA, 5)));
  turn = groups.next("k", &kThreadB, 64, 1024);
  CHECK(turn.group.empty());
  REQUIRE(turn.elsewhere != nullptr);
  CHECK(static_cast<const Commit&>(*turn.elsewhere).id == 4);
  CHECK_FALSE(groups.join("k", commit(kThreadB, 6))); // and the one on A takes over, not a new one
  turn = groups.next("k", &kThreadA, 64, 1024);
  CHECK(ids(turn.group) == std::vector<int>{4, 5, 6});
}

TEST_CASE("a group stops at its limits of commits and writes; the rest go with the next") {
  ApplyGroups groups;
  for (int id = 1; id <= 5; ++id)
    groups.join("k", commit(kThreadA, id));
  CHECK(ids(groups.next("k", &kThreadA, 3, 1024).group) == std::vector<int>{1, 2, 3});
  CHECK(ids(groups.next("k", &kThreadA, 3, 1024).group) == std::vector<int>{4, 5});

  groups.join("k", commit(kThreadB, 6, 5));
  groups.join("k", commit(kThreadB, 7, 5));
  groups.join("k", commit(kThreadB, 8, 5));
  // 10 writes reach the limit of 8: no third commit joins.
  CHECK(ids(groups.next("k", &kThreadB, 64, 8).group) == std::vector<int>{6, 7});
  CHECK(ids(groups.next("k", &kThreadB, 64, 8).group) == std::vector<int>{8});
  groups.join("k", commit(kThreadB, 9, 100)); // a commit over the limit still goes, alone
  groups.join("k", commit(kThreadB, 10, 1));
  CHECK(ids(groups.next("k", &kThreadB, 64, 8).group) == std::vector<int>{9});
  CHECK(ids(groups.next("k", &kThreadB, 64, 8).group) == std::vector<int>{10});
  CHECK(groups.next("k", &kThreadB, 64, 8).group.empty());
}
