#include "proxy/fleet.hpp"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <memory>

namespace switchyard::proxy {
namespace {

constexpr timeval kConnectTimeout{0, 500'000};
constexpr timeval kCommandTimeout{1, 0};
constexpr auto kReconcileEvery = std::chrono::seconds(1);
constexpr int kPollMillis = 200;
constexpr int kMemberTtlSeconds = 5; // a proxy silent this long is no longer listed

// Sets KEYS[1] to ARGV[1] and announces it on KEYS[2] only if the stored state's version is
// ARGV[2] (or nothing is stored); otherwise answers the stored state.
constexpr const char* kCompareAndSet = R"lua(
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and tonumber(decoded['version']) ~= tonumber(ARGV[2]) then return {0, current} end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return {1}
)lua";

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

Result<std::optional<routing::CutoverState>> parse_stored(const redisReply& reply) {
  if (reply.type == REDIS_REPLY_NIL) return std::optional<routing::CutoverState>();
  if (reply.type != REDIS_REPLY_STRING) return Error{"unexpected reply to GET"};
  auto state = routing::cutover_from_json(std::string_view(reply.str, reply.len));
  if (!state) return Error{"the fleet's stored state is unreadable: " + state.error()};
  return std::optional<routing::CutoverState>(*state);
}

} // namespace

RedisFleet::RedisFleet(config::FleetSettings settings)
    : settings_(std::move(settings)), channel_(settings_.key + ":changes") {}

RedisFleet::~RedisFleet() {
  stopping_ = true;
  wake_.notify_all();
  if (watcher_.joinable()) watcher_.join();
  if (command_ != nullptr) redisFree(command_);
}

redisContext* RedisFleet::connect(std::string& error) const {
  redisContext* context =
      redisConnectWithTimeout(settings_.host.c_str(), settings_.port, kConnectTimeout);
  if (context == nullptr || context->err != 0) {
    error = context != nullptr ? context->errstr : "out of memory";
    if (context != nullptr) redisFree(context);
    return nullptr;
  }
  redisSetTimeout(context, kCommandTimeout);
  auto check = [&](Reply reply) {
    if (reply && reply->type != REDIS_REPLY_ERROR) return true;
    error = reply ? std::string(reply->str, reply->len) : context->errstr;
    return false;
  };
  if (!settings_.password.empty() && !check(Reply(static_cast<redisReply*>(redisCommand(
                                         context, "AUTH %s", settings_.password.c_str()))))) {
    redisFree(context);
    return nullptr;
  }
  if (settings_.database != 0 &&
      !check(Reply(static_cast<redisReply*>(
          redisCommand(context, "SELECT %u", static_cast<unsigned>(settings_.database)))))) {
    redisFree(context);
    return nullptr;
  }
  return context;
}

// After a failed command: why, in words, and a fresh connection next time.
std::string RedisFleet::drop_command_connection() {
  std::string why = command_->err == REDIS_ERR_IO && errno == EAGAIN
                        ? "no answer within " + std::to_string(kCommandTimeout.tv_sec) + " s"
                        : std::string("connection lost: ") + command_->errstr;
  redisFree(command_);
  command_ = nullptr;
  return why;
}

Result<std::optional<routing::CutoverState>> RedisFleet::load() {
  std::lock_guard lock(command_mutex_);
  std::string error;
  if (command_ == nullptr && (command_ = connect(error)) == nullptr) {
    return Error{"fleet Redis " + settings_.host + ":" + std::to_string(settings_.port) +
                 " unreachable: " + error};
  }
  Reply reply(static_cast<redisReply*>(redisCommand(command_, "GET %s", settings_.key.c_str())));
  if (!reply) return Error{"fleet Redis: " + drop_command_connection()};
  if (reply->type == REDIS_REPLY_ERROR) {
    return Error{"fleet Redis refused GET: " + std::string(reply->str, reply->len)};
  }
  return parse_stored(*reply);
}

Result<RedisFleet::Swap> RedisFleet::compare_and_set(const routing::CutoverState& next,
                                                     uint64_t expected) {
  std::lock_guard lock(command_mutex_);
  std::string error;
  if (command_ == nullptr && (command_ = connect(error)) == nullptr) {
    return Error{"fleet Redis " + settings_.host + ":" + std::to_string(settings_.port) +
                 " unreachable: " + error};
  }
  std::string state = routing::to_json(next);
  std::string version = std::to_string(expected);
  Reply reply(static_cast<redisReply*>(
      redisCommand(command_, "EVAL %s 2 %s %s %s %s", kCompareAndSet, settings_.key.c_str(),
                   channel_.c_str(), state.c_str(), version.c_str())));
  if (!reply) {
    // Sent but unconfirmed: Redis may still run it (e.g. once a stopped server resumes).
    return Error{"fleet Redis: " + drop_command_connection() +
                 "; the change may still reach the fleet, check the status"};
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
    std::string why =
        reply->type == REDIS_REPLY_ERROR ? std::string(reply->str, reply->len) : "unexpected reply";
    return Error{"fleet Redis refused the state change: " + why};
  }
  Swap swap;
  swap.written = reply->element[0]->integer == 1;
  if (!swap.written && reply->elements > 1) {
    auto current = parse_stored(*reply->element[1]);
    if (!current) return Error{current.error()};
    swap.current = *current;
  }
  return swap;
}

void RedisFleet::watch(OnState on_state, OnHealth on_health, const std::string& member_id,
                       Heartbeat heartbeat, OnMembers on_members) {
  on_state_ = std::move(on_state);
  on_health_ = std::move(on_health);
  member_key_ = settings_.key + ":proxies:" + member_id;
  heartbeat_ = std::move(heartbeat);
  on_members_ = std::move(on_members);
  watcher_ = std::thread([this] { watch_loop(); });
}

void RedisFleet::reconcile() {
  auto stored = load();
  on_health_(stored.ok());
  if (stored) on_state_(*stored);
  if (stored) beat();
}

// Publishes this proxy's heartbeat and collects the live members' (SCAN + MGET).
void RedisFleet::beat() {
  std::string mine = heartbeat_();
  std::vector<std::string> members;
  {
    std::lock_guard lock(command_mutex_);
    if (command_ == nullptr) return;
    Reply set(static_cast<redisReply*>(redisCommand(
        command_, "SET %s %s EX %d", member_key_.c_str(), mine.c_str(), kMemberTtlSeconds)));
    if (!set) {
      drop_command_connection();
      return;
    }
    std::string pattern = settings_.key + ":proxies:*";
    std::string cursor = "0";
    std::vector<std::string> keys;
    do {
      Reply page(static_cast<redisReply*>(
          redisCommand(command_, "SCAN %s MATCH %s COUNT 100", cursor.c_str(), pattern.c_str())));
      if (!page) {
        drop_command_connection();
        return;
      }
      if (page->type != REDIS_REPLY_ARRAY || page->elements != 2) return;
      cursor.assign(page->element[0]->str, page->element[0]->len);
      for (size_t i = 0; i < page->element[1]->elements; ++i) {
        const redisReply* key = page->element[1]->element[i];
        keys.emplace_back(key->str, key->len);
      }
    } while (cursor != "0");
    for (const std::string& key : keys) {
      Reply value(static_cast<redisReply*>(redisCommand(command_, "GET %s", key.c_str())));
      if (!value) {
        drop_command_connection();
        return;
      }
      if (value->type == REDIS_REPLY_STRING) members.emplace_back(value->str, value->len);
    }
  }
  on_members_(std::move(members));
}

void RedisFleet::watch_loop() {
  while (!stopping_) {
    std::string error;
    redisContext* subscriber = connect(error);
    Reply subscribed;
    if (subscriber != nullptr) {
      subscribed.reset(
          static_cast<redisReply*>(redisCommand(subscriber, "SUBSCRIBE %s", channel_.c_str())));
    }
    if (!subscribed || subscribed->type == REDIS_REPLY_ERROR) {
      if (subscriber != nullptr) redisFree(subscriber);
      on_health_(false);
      std::unique_lock lock(sleep_mutex_);
      wake_.wait_for(lock, kReconcileEvery, [this] { return stopping_.load(); });
      continue;
    }
    reconcile(); // whatever changed while this proxy was not listening
    auto last = std::chrono::steady_clock::now();
    while (!stopping_) {
      pollfd poll_fd{subscriber->fd, POLLIN, 0};
      if (::poll(&poll_fd, 1, kPollMillis) > 0) {
        if (redisBufferRead(subscriber) != REDIS_OK) break; // Redis went away
        void* raw = nullptr;
        while (redisGetReplyFromReader(subscriber, &raw) == REDIS_OK && raw != nullptr) {
          Reply message(static_cast<redisReply*>(raw));
          raw = nullptr;
          if (message->type != REDIS_REPLY_ARRAY || message->elements != 3 ||
              message->element[2]->type != REDIS_REPLY_STRING) {
            continue;
          }
          auto state = routing::cutover_from_json(
              std::string_view(message->element[2]->str, message->element[2]->len));
          if (state) on_state_(std::optional<routing::CutoverState>(*state));
        }
      }
      if (auto now = std::chrono::steady_clock::now(); now - last >= kReconcileEvery) {
        last = now;
        reconcile();
      }
    }
    redisFree(subscriber);
    if (!stopping_) on_health_(false);
  }
}

} // namespace switchyard::proxy
