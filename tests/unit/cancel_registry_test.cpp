#include <catch2/catch.hpp>

#include <set>

#include "proxy/cancel_registry.hpp"

using namespace switchyard;

TEST_CASE("cancel keys map to their backend and only with the right secret") {
  proxy::CancelRegistry registry;
  config::BackendTarget backend;
  backend.host = "10.0.0.1";
  auto [pid, key] = registry.add(proxy::CancelTarget{backend, 111, 222});
  CHECK(pid != 0);
  auto found = registry.find(pid, key);
  REQUIRE(found);
  CHECK(found->backend.host == "10.0.0.1");
  CHECK(found->backend_pid == 111);
  CHECK(found->backend_key == 222);
  CHECK_FALSE(registry.find(pid, key + 1));
  registry.remove(pid);
  CHECK_FALSE(registry.find(pid, key));
}

TEST_CASE("issued pids are unique among live sessions") {
  proxy::CancelRegistry registry;
  std::set<uint32_t> pids;
  for (int i = 0; i < 2000; ++i)
    pids.insert(registry.add(proxy::CancelTarget{}).first);
  CHECK(pids.size() == 2000);
}
