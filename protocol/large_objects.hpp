#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocol/extended.hpp"
#include "protocol/row_image.hpp"

namespace switchyard::protocol {

//! The large-object functions: those clients call through FunctionCall (libpq's lo_*, JDBC's
//! LargeObjectManager), which act on an object through a descriptor the session opened, and
//! those SQL calls by the object's OID.
enum class LargeObjectFunction {
  kCreat,      //!< lo_creat(mode): a new object, its OID chosen by the server
  kCreate,     //!< lo_create(oid): a new object, with that OID, or one chosen for 0
  kUnlink,     //!< lo_unlink(oid)
  kOpen,       //!< lo_open(oid, mode): a descriptor, at offset 0
  kClose,      //!< lo_close(fd)
  kRead,       //!< loread(fd, len): moves the offset by the bytes read
  kWrite,      //!< lowrite(fd, data): at the offset, which moves past the data
  kSeek,       //!< lo_lseek(fd, offset, whence): the new offset
  kSeek64,     //!< lo_lseek64, the same with a bigint offset
  kTell,       //!< lo_tell(fd): the offset
  kTell64,     //!< lo_tell64
  kTruncate,   //!< lo_truncate(fd, len)
  kTruncate64, //!< lo_truncate64(fd, bigint len)
  kFromBytea,  //!< lo_from_bytea(oid, data): a new object holding data, its OID chosen for 0
  kPut,        //!< lo_put(oid, offset, data)
  kGet,        //!< lo_get(oid [, offset, len])
  kImport,     //!< lo_import(path [, oid]): a new object holding a file of the server's
  kExport,     //!< lo_export(oid, path): writes a file on the server, no object
};

//! The large-object function of pg_proc OID `function` (PostgreSQL fixes its built-in
//! functions' OIDs), if it is one.
std::optional<LargeObjectFunction> large_object_function(uint32_t function);
//! The pg_proc OID of the built-in large-object function `name` taking `arguments`
//! arguments, if there is one.
std::optional<uint32_t> large_object_function_oid(std::string_view name, size_t arguments);
//! Whether the function changes what is stored (creates, removes or writes an object).
bool writes(LargeObjectFunction function);

//! A call of a large-object function, as a FunctionCall makes it.
struct LargeObjectCall {
  LargeObjectFunction function;
  FunctionCallMessage call;
};

//! A statement that is one call of a large-object function, `SELECT lo_open('16385', 131072)`
//! as pg_dump's output restores objects, or `SELECT lo_from_bytea(0, $1)`, as the FunctionCall
//! that does the same: its arguments the statement's literals (text) and the parameters
//! `bind` gives (in its formats), its result in the format of the result's first column.
//! nullopt for any other statement (see protocol::function_call_statement).
std::optional<LargeObjectCall> sql_large_object_call(std::string_view statement,
                                                     const BindMessage* bind);

//! What the secondary runs to do what a large-object FunctionCall did on the primary: SQL
//! that names the object and the offset instead of a descriptor, with the data written (if
//! any) as its one parameter, $1, a bytea in the client's format. Should the secondary miss it,
//! the replayer makes the object what the primary's is (journal kind large_object).
struct LargeObjectWrite {
  uint32_t object = 0; //!< the large object's OID
  std::string sql;
  std::vector<uint32_t> types;
  std::vector<uint16_t> formats;
  std::vector<Value> parameters;
  //! The object holds what the primary made of something the secondary may not have (a file
  //! lo_import read there): the secondary only creates it, and the replayer copies the
  //! primary's once the transaction committed.
  bool copy_from_primary = false;
};

//! What the secondary runs for an object a call of `function` (one creating an object:
//! lo_creat, lo_create, lo_from_bytea, lo_import) made on the primary, `object` its OID (a
//! value in `format`): lo_from_bytea of that OID with `data` (the call's, in `data_format`)
//! when given, else lo_create of it, with the primary's bytes copied once the transaction
//! committed where the object holds any (a file lo_import read, data not given). nullopt
//! when `object` is no OID.
std::optional<LargeObjectWrite> created_large_object(LargeObjectFunction function,
                                                     const Value& object, uint16_t format,
                                                     const Value* data = nullptr,
                                                     uint16_t data_format = 0);

//! A session's open large-object descriptors, from the primary's answers to its
//! FunctionCalls: the object each stands for and the offset it reads and writes at next.
//! Descriptors are numbered per connection, and the connection that applies a session's
//! writes on the secondary may be other sessions' too, so writes reach the secondary by what
//! a descriptor stands for, never by its number.
class LargeObjectDescriptors {
public:
  //! The descriptor `call` (to a function taking one) acts through, when this book does
  //! not know it (the session opened it with SQL the book does not follow): what a write
  //! through it does cannot be told.
  std::optional<int32_t> unknown_descriptor(LargeObjectFunction function,
                                            const FunctionCallMessage& call) const;
  //! The primary answered `call` with `result` (the FunctionCallResponse's value, in the
  //! call's result format): the book follows, and says what the secondary must run, if
  //! anything.
  std::optional<LargeObjectWrite> answered(LargeObjectFunction function,
                                           const FunctionCallMessage& call, const Value& result);
  //! The transaction ended, and with it, in PostgreSQL, every descriptor.
  void clear() { open_.clear(); }

private:
  struct Open {
    uint32_t object = 0;
    int64_t offset = 0;
  };
  std::unordered_map<int32_t, Open> open_;
};

} // namespace switchyard::protocol
