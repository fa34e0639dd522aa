#pragma once

// Client side of WorkerControl.UploadCheckpoint (not yet implemented).
