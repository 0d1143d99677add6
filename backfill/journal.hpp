#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "protocol/result.hpp"
#include "protocol/row_image.hpp"

namespace switchyard::backfill {

//! A write the secondary did not apply as the primary did: which rows (table and values,
//! from which the replayer takes the key) or which statement, and why.
struct JournalEntry {
  //! kTable: the whole table (`table`) is to be copied, as a query filled it on the primary
  //! with rows the secondary's run of that query need not choose alike (reason
  //! "filled_by_query": its rows replaced), or a column's default gave its rows values
  //! chosen on each side ("filled_by_default": the primary's rows written over by key), or
  //! a COPY FROM STDIN the secondary missed added rows ("filled_by_copy": as the latter),
  //! or a writing CTE or MERGE the secondary missed wrote it ("written_by_statement": as the
  //! latter, and its rows the primary no longer has deleted).
  //! kLargeObject: a large object (`large_object`) is to be made what the primary's is.
  enum class Kind { kRow, kStatement, kTable, kLargeObject };
  Kind kind = Kind::kRow;
  //! The database that missed the write, as the cutover names them: "new" (the config's
  //! secondary) or "old" (its primary, which misses writes once promotion swapped roles).
  //! The replayer copies from the other one.
  std::string missed_by = "new";
  std::string user;          //!< the session's database user, to reconnect as
  std::string database;      //!< the session's database
  std::string table;         //!< quoted, possibly qualified name (rows)
  uint32_t large_object = 0; //!< the large object's OID (kLargeObject)
  std::string op;            //!< "insert", "update" or "delete": what the statement did (rows)
  std::vector<std::string> columns; //!< row image column names (rows)
  //! The columns an UPDATE's SET (an upsert's DO UPDATE SET) assigns, in the first entry of
  //! its rows: where they include the table's key, the rows under their old keys are the
  //! replayer's to remove too.
  std::vector<std::string> assigned;
  std::vector<uint32_t> types;         //!< type OIDs, per value
  std::vector<uint16_t> formats;       //!< 0 text, 1 binary, per value
  std::vector<protocol::Value> values; //!< the row image (rows) or the parameters (statements)
  std::string sql;                     //!< the statement (statements)
  //! The session's settings (SET statements, in order) the write ran under: the replayer
  //! adopts them, so names resolve by the session's search_path.
  std::vector<std::string> settings;
  //! The rows one primary statement wrote are consecutive entries: the first says how many
  //! (at least 1), those after it 0. They replay as one statement, so the database that
  //! missed them checks its constraints after them all, as the primary did.
  uint32_t statement_rows = 1;
  bool ddl = false;        //!< the statement changes the schema (replayed in order)
  std::string fingerprint; //!< libpg_query fingerprint of the client's statement
  std::string reason;      //!< a MirrorFailure label
  std::string error;       //!< the secondary's error or what went wrong
  std::string time;        //!< ISO-8601 UTC, set when appended
  //! The database that missed it may have applied it after all: the write reached it and
  //! then its answer did not (a timeout or a broken connection). Not idempotent to replay
  //! as is where a row has no key.
  bool maybe_applied = false;
};

//! Serializes an entry as one JSON line (without the newline), and back.
std::string to_json_line(const JournalEntry& entry);
Result<JournalEntry> from_json_line(std::string_view line);

//! The durable divergence journal: an append-only JSON-lines file, and a cursor file saying
//! how much of it the replayer has applied. Appends are written at once and made durable by
//! a flusher thread of the journal's own, whose one fdatasync covers every append written
//! before it began (group commit): whoever appended waits for when_durable, not the disk.
//! Thread-safe.
class DivergenceJournal {
public:
  //! Seconds an fdatasync took; called on the flusher thread.
  using FlushObserver = std::function<void(double)>;
  //! Opens (creating the file and its directory if needed) and counts the backlog.
  static Result<std::unique_ptr<DivergenceJournal>> open(const std::string& path,
                                                         FlushObserver flushed = {});
  //! Makes everything appended durable first.
  ~DivergenceJournal();
  DivergenceJournal(const DivergenceJournal&) = delete;
  DivergenceJournal& operator=(const DivergenceJournal&) = delete;

  //! Appends entries, on disk soon: returns the ticket when_durable takes for them. Their
  //! offset goes into `unsettled` when given: the replayer leaves them (and all after)
  //! alone until settle(offset), because they were written before the primary committed
  //! and replaying them first would read the row too early.
  Result<uint64_t> append(std::span<const JournalEntry> entries, uint64_t* unsettled = nullptr);
  //! Whether what was appended up to `ticket` is on disk.
  bool durable(uint64_t ticket) const;
  //! Calls `done` once what was appended up to `ticket` is on disk (or its fdatasync failed:
  //! with the error), on the flusher thread, or at once if it is so already.
  void when_durable(uint64_t ticket, std::function<void(Status)> done);
  //! Flushes what is appended, calls every when_durable still waiting and ends the flusher
  //! thread; later waits are served on the caller's thread. For shutdown: no `done` runs
  //! after this returns.
  void stop_flusher();
  //! The primary transaction behind the entries appended at `offset` has ended.
  void settle(uint64_t offset);

  //! Up to `max` durable entries after the cursor, each with the offset just past it.
  Result<std::vector<std::pair<uint64_t, JournalEntry>>> pending(size_t max);
  //! Marks everything before `offset` as replayed; empties the files when all is.
  Status acknowledge(uint64_t offset);
  //! Entries written and not yet acknowledged.
  uint64_t backlog() const;
  //! Entries appended since open (counting the backlog found then), and acknowledged since
  //! open: once acknowledged_total() reaches an earlier appended_total(), every entry
  //! written before that point has been replayed (or given up on).
  uint64_t appended_total() const;
  uint64_t acknowledged_total() const;
  //! Of appended_total(), the entries before the first whose primary transaction has not
  //! ended: the primary shows what all of those wrote.
  uint64_t settled_total() const;
  const std::string& path() const { return path_; }

private:
  DivergenceJournal(std::string path, int fd, uint64_t cursor, uint64_t backlog, uint64_t file_end,
                    FlushObserver flushed);
  Status save_cursor(uint64_t cursor);
  //! The flusher thread: fdatasyncs whenever something was written since its last one.
  void flush_appends();
  //! fdatasyncs what is written so far, `lock` (of mutex_) released meanwhile; the error if
  //! that failed.
  Status flush_written(std::unique_lock<std::mutex>& lock);
  //! Takes the waiters `ticket` satisfies (with mutex_ held).
  std::vector<std::function<void(Status)>> take_waiters(uint64_t ticket);

  std::string path_;
  int fd_;
  FlushObserver flushed_;
  mutable std::mutex mutex_;
  uint64_t cursor_;
  uint64_t backlog_;
  uint64_t appended_total_;
  uint64_t acknowledged_total_ = 0;
  //! The offsets of appends whose primary transaction has not ended, each with the number
  //! of entries appended before it.
  std::multimap<uint64_t, uint64_t> unsettled_;

  // Durability. Tickets count the bytes appended since open, so they keep growing when the
  // file is emptied (acknowledge); the file's own offsets start again then (`emptied_`).
  uint64_t written_bytes_ = 0;
  uint64_t durable_bytes_ = 0;
  uint64_t file_end_;         //!< where the next append lands in the file
  uint64_t durable_file_end_; //!< how much of the file is on disk: all pending() reads
  uint64_t emptied_ = 0;      //!< times acknowledge emptied the file
  std::multimap<uint64_t, std::function<void(Status)>> waiters_; //!< by ticket
  std::condition_variable written_;
  bool stopping_ = false;
  std::thread flusher_;
};

} // namespace switchyard::backfill
