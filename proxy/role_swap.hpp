#pragma once

#include "proxy/asio.hpp"
#include "proxy/services.hpp"

namespace switchyard::proxy {

//! In `db` on the primary of `runtime` (the database that just became the primary), over a
//! connection of its own: moves every sequence owned by a serial or identity column (that
//! the login may update) up to the largest value its column holds, and every sequence up to
//! where the same sequence stands on the old primary (when that one answers). While the
//! database was the secondary, rows reached it with the ids the other database drew, so its
//! sequences stayed behind; without this, the first inserts after a swap would collide with
//! rows it already has. Nothing to do on SQLite, which draws rowids from the rows themselves.
//! Bounded by cutover.swap_timeout; a failure is logged and left for the next session of
//! `db` to try again (Services::catch_up_failed).
asio::awaitable<void> catch_up_sequences(Services& services, const Runtime& runtime,
                                         const Services::SessionDatabase& db);

//! Completes each role swap: once no session with the old roles is left, catches up the
//! sequences of every database sessions have used on the new primary, then settles the
//! swap so that held writes go on. Runs until the io_context stops.
asio::awaitable<void> settle_role_swaps(Services& services);

} // namespace switchyard::proxy
