# Pin maps of the boards perimon runs on, per device (docs/firmware.md, "Boards"): plain data, so
# the tests check the rules below on CPython too. board.py chooses the map; the HALs use it.
#
# esp32_wroom  classic ESP32 (ESP32-WROOM-32E), 4 MB flash, no PSRAM
# esp32_wrover classic ESP32 with PSRAM (ESP32-WROVER-E): GPIO16 and 17 drive the PSRAM
# esp32_s3     ESP32-S3 (ESP32-S3-WROOM-1 N8R8): octal PSRAM on GPIO33-37, no DAC
#
# Rules (tests/test_firmware_boards.py holds every map to them): no strapping pin (classic:
# 0, 2, 5, 12, 15; S3: 0, 3, 45, 46), no flash, PSRAM or console UART pin, no USB pin on the
# S3; analogue inputs on ADC1 (ADC2 is shared with the radio); a pull-up only where the chip
# has one (not classic GPIO34-39); each pin once. Keys ending in _adc are analogue inputs,
# _in digital inputs with the internal pull-up, the rest outputs or bus lines.

FETAL_HEART = {
    "esp32_wroom": {
        "i2s_sck": 26, "i2s_ws": 25, "i2s_sd": 33,  # Doppler ADC (I2S RX, 4 kHz)
        "ppg_adc": 34, "battery_adc": 35,  # through a 1:2 divider
        "skin_in": 27,  # low when the probe's contact electrode touches skin
        "led_r": 16, "led_g": 17, "led_b": 18, "buzzer": 19,
        "button_in": 32,  # the pairing button, to ground (GPIO0, BOOT, is a strapping pin)
        "spk_sck": 14, "spk_ws": 23, "spk_sd": 13,  # speaker amplifier (I2S TX; not GPIO12)
    },
    "esp32_wrover": {
        "i2s_sck": 26, "i2s_ws": 25, "i2s_sd": 33,
        "ppg_adc": 34, "battery_adc": 35,
        "skin_in": 27,
        "led_r": 4, "led_g": 22, "led_b": 18, "buzzer": 19,  # 16 and 17 are the PSRAM's
        "button_in": 32,
        "spk_sck": 14, "spk_ws": 23, "spk_sd": 13,
    },
    "esp32_s3": {
        "i2s_sck": 5, "i2s_ws": 6, "i2s_sd": 7,
        "ppg_adc": 1, "battery_adc": 2,  # ADC1 is GPIO1-10 on the S3
        "skin_in": 8,
        "led_r": 11, "led_g": 12, "led_b": 13, "buzzer": 14,
        "button_in": 15,
        "spk_sck": 16, "spk_ws": 17, "spk_sd": 18,
    },
}  # fmt: skip

JAUNDICE = {
    "esp32_wroom": {
        "i2c_sda": 21, "i2c_scl": 22,  # the photodiodes' ADC (ADS1115) and the thermometer
        "contact_in": 27,  # low while the probe is pressed on the skin
        "led_en": 4, "led_sel0": 16, "led_sel1": 17, "led_sel2": 18,  # 1-of-8 LED switch
        "led_dac": 25,  # LED current setpoint: the ESP32's 8-bit DAC
        "battery_adc": 35,
    },
    "esp32_wrover": {
        "i2c_sda": 21, "i2c_scl": 22,
        "contact_in": 27,
        "led_en": 4, "led_sel0": 18, "led_sel1": 19, "led_sel2": 23,  # 16 and 17: PSRAM
        "led_dac": 25,
        "battery_adc": 35,
    },
    "esp32_s3": {
        "i2c_sda": 8, "i2c_scl": 9,
        "contact_in": 10,
        "led_en": 11, "led_sel0": 12, "led_sel1": 13, "led_sel2": 14,
        # no DAC on the S3: an 8-bit PWM at 40 kHz through a two-pole RC filter (10 kOhm,
        # 100 nF twice: 0.2 % ripple, settled in 5 ms, within the LED's settling wait)
        "led_pwm": 15,
        "battery_adc": 1,
    },
}  # fmt: skip

# What each chip forbids, for the tests and for anyone adding a board.
RESERVED = {
    "esp32_wroom": {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 15},  # strapping, UART0, flash
    "esp32_wrover": {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 15, 16, 17},  # ... and PSRAM
    "esp32_s3": {0, 3, 45, 46, 19, 20, 43, 44} | set(range(26, 38)),  # ... USB, flash, PSRAM
}
ADC1 = {
    "esp32_wroom": set(range(32, 40)),
    "esp32_wrover": set(range(32, 40)),
    "esp32_s3": set(range(1, 11)),
}
NO_PULL = {"esp32_wroom": set(range(34, 40)), "esp32_wrover": set(range(34, 40)),
           "esp32_s3": set()}  # fmt: skip
DAC = {"esp32_wroom": {25, 26}, "esp32_wrover": {25, 26}, "esp32_s3": set()}
