// SPDX-License-Identifier: Apache-2.0
// Host entry point; on a board, call setup() and loop() from the platform's main or task.
#include "main_functions.h"

int main(int argc, char* argv[]) {
  (void)argc;
  (void)argv;
  if (!setup()) return 1;
  while (loop()) {
  }
  return 0;
}
