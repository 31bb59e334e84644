// What the app does with a result. The reference version logs with MicroPrintf; a board
// port replaces this file (LED, BLE notification, ...).
#ifndef TF_FASTGRNN_TFLM_APP_OUTPUT_HANDLER_H_
#define TF_FASTGRNN_TFLM_APP_OUTPUT_HANDLER_H_

// End of a window: the top class and its logit.
void HandleWindowResult(int window, int class_index, float logit);
// Continuous mode (keyword spotting): a smoothed detection.
void HandleDetection(int step, int class_index, float score);

#endif  // TF_FASTGRNN_TFLM_APP_OUTPUT_HANDLER_H_
