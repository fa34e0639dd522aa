#pragma once

// The trainer's background checkpoint uploader (not yet implemented).
