/* SPDX-License-Identifier: Apache-2.0 */
/* AVR on simavr: UART0 for output, Timer1 at clk/1 extended by its overflow interrupt
 * for cycles, sleep with interrupts off to end the run (simavr stops). */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>

#include "platform.h"

static volatile uint16_t overflows;
ISR(TIMER1_OVF_vect) { ++overflows; }

void platform_init(void) {
  UCSR0B = (1 << TXEN0);
  TCCR1A = 0;
  TIMSK1 = (1 << TOIE1);
  TCCR1B = (1 << CS10);
  sei();
}

void platform_putc(char c) {
  while (!(UCSR0A & (1 << UDRE0))) {
  }
  UDR0 = c;
}

void platform_exit(int code) {
  (void)code;
  cli();
  sleep_cpu();
  for (;;) {
  }
}

uint32_t platform_cycles(void) {
  uint16_t lo, hi;
  uint8_t sreg = SREG;
  cli();
  lo = TCNT1;
  hi = overflows;
  if ((TIFR1 & (1 << TOV1)) && lo < 0x8000) ++hi;
  SREG = sreg;
  return ((uint32_t)hi << 16) | lo;
}
