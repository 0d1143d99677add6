#pragma once

#include "proxy/asio.hpp"
#include "proxy/services.hpp"

namespace switchyard::proxy {

//! Drains the divergence journal while the secondary is reachable: each journaled row is
//! re-read from the primary under a share lock (so live writes to it wait) and upserted on
//! the secondary, or deleted there when the primary no longer has it; journaled DDL is
//! re-run in order. Other statements cannot be replayed safely: they are logged and
//! counted as unreplayable for verify/repair. Runs until the io_context stops.
asio::awaitable<void> replay_journal(Services& services);

} // namespace switchyard::proxy
