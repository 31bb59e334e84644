// SPDX-License-Identifier: Apache-2.0
// What the app does with a result, and where its log text goes. The reference version
// logs with MicroPrintf and writes the text to stderr; a board port replaces this file
// (LED, BLE notification, ...; log text to a UART or RTT).
#ifndef TF_FASTGRNN_TFLM_APP_OUTPUT_HANDLER_H_
#define TF_FASTGRNN_TFLM_APP_OUTPUT_HANDLER_H_

// End of a window: the top class and its logit.
void HandleWindowResult(int window, int class_index, float logit);
// Continuous mode (keyword spotting): a smoothed detection.
void HandleDetection(int step, int class_index, float score);
// Log output: `size` characters of formatted text (debug_log.cc calls it for every
// MicroPrintf, TFLM's included).
void LogWrite(const char* text, int size);

#endif  // TF_FASTGRNN_TFLM_APP_OUTPUT_HANDLER_H_
