#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace switchyard::routing {

//! What puts a session into the read cohort.
enum class CohortKey { kSession, kUser, kApplicationName, kClientAddress };
//! How long a routing decision holds: one statement, one transaction, or the whole session.
enum class DecisionUnit { kStatement, kTransaction, kSession };

//! The number of cohort buckets; a percentage p routes buckets [0, p * 100).
inline constexpr uint32_t kBuckets = 10'000;

//! The bucket (0 .. 9999) `key` hashes to: the same on every proxy and across restarts, so
//! raising the percentage only adds buckets and lowering it only removes them.
uint32_t cohort_bucket(std::string_view key);

//! Whether `bucket` is among the first `percent` % (0-100, fractional) of the buckets.
bool in_cohort(uint32_t bucket, double percent);

//! The read-routing policy of one config snapshot.
struct ReadPolicy {
  double percent = 0;
  CohortKey key = CohortKey::kSession;
  DecisionUnit unit = DecisionUnit::kStatement;
  std::vector<std::pair<std::string, double>> user_percent;        //!< overrides by user
  std::vector<std::pair<std::string, double>> application_percent; //!< by application_name

  //! The percentage for a session of `user` running as `application`: an application
  //! override wins over a user override, which wins over `percent`.
  double percent_for(std::string_view user, std::string_view application) const;
};

//! Who a session is, for its cohort key.
struct SessionIdentity {
  std::string session_id; //!< unique per session (e.g. a random id drawn at accept)
  std::string user;
  std::string application_name;
  std::string client_address; //!< without the port
};

enum class ReadTarget { kPrimary, kSecondary };

//! Why a read went where it went (a metric label).
enum class RouteReason {
  kCohort,             //!< safe read, session in the cohort: secondary
  kOutsideCohort,      //!< safe read, session not in the cohort: primary
  kUnsafe,             //!< not a read the secondary may serve: primary
  kWrittenTransaction, //!< the transaction wrote, so it reads its own writes on the primary
  kCount
};
const char* to_string(RouteReason reason);

struct RouteDecision {
  ReadTarget target = ReadTarget::kPrimary;
  RouteReason reason = RouteReason::kOutsideCohort;
};

//! What the router needs to know about a statement.
struct ReadRequest {
  bool safe = false;           //!< a read without locking clauses or volatile functions
  bool in_transaction = false; //!< inside BEGIN ... COMMIT
  bool transaction_wrote = false;
};

//! One session's routing: applies the policy of the moment at each decision and keeps a
//! decision as long as the policy's unit says, so a reload changes the next decision and
//! an open transaction keeps its own.
class SessionRouter {
public:
  explicit SessionRouter(SessionIdentity identity) : identity_(std::move(identity)) {}

  RouteDecision route(const ReadPolicy& policy, const ReadRequest& request);
  //! The session's transaction ended: a per-transaction decision is taken afresh next time.
  void end_transaction() { transaction_decision_.reset(); }
  //! SET application_name: the key (and override) of later decisions.
  void set_application_name(std::string name) { identity_.application_name = std::move(name); }
  const SessionIdentity& identity() const { return identity_; }

private:
  bool decide(const ReadPolicy& policy) const;

  SessionIdentity identity_;
  std::optional<bool> transaction_decision_;
  std::optional<bool> session_decision_;
};

} // namespace switchyard::routing
