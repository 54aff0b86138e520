"""What every Sundial service shares. Importing it makes time-zone rules come from the
pinned tzdata package, not the host (see sundial.core.zones)."""

from sundial.core.zones import use_packaged_rules

use_packaged_rules()
