// SPDX-License-Identifier: Apache-2.0
// The TFLM examples' split: setup() once, loop() forever (a board's main or the RTOS task
// calls them). loop() returns false once inference has failed; the caller stops then.
#ifndef TF_FASTGRNN_TFLM_APP_MAIN_FUNCTIONS_H_
#define TF_FASTGRNN_TFLM_APP_MAIN_FUNCTIONS_H_

// Returns false when the model cannot run (schema, types, dims, arena).
bool setup();
// Processes one time step; returns false when Invoke fails or the features end.
bool loop();

#endif  // TF_FASTGRNN_TFLM_APP_MAIN_FUNCTIONS_H_
