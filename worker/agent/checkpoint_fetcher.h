#pragma once

// The agent's resume-checkpoint cache and fetcher (not yet implemented).
