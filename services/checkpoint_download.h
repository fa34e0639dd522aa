#pragma once

// Client side of checkpoint downloads (not yet implemented).
