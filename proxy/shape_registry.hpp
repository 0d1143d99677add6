#pragma once

#include "protocol/row_image.hpp"
#include "proxy/epoch_cache.hpp"

namespace switchyard::proxy {

//! The table shapes (primary key and generated columns) sessions' secondary links read from
//! the secondary, shared so that a new session knows them before its first write reaches the
//! secondary: its first async commits can then be ordered by row instead of waiting as
//! barriers, and it skips the catalog query. Keys name everything a table name resolves by
//! (see SecondaryLink::shared_shape_key).
using ShapeRegistry = EpochCache<protocol::TableShape>;

} // namespace switchyard::proxy
