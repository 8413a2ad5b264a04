# The radio a device's settings ask for, the same on every board: "serial" is the USB cable
# (radio_serial), anything else the board's own radio (radio_ble). Each radio module is imported
# only when chosen, so a device never holds another radio's bytecode in its heap. Under the Unix
# port the simulation HAL asks here only for the cable; its other radios are firmware/sim's
# radio_sim (the socket link, or radio_ble on a simulated controller).


def make_radio(settings, adv, usb_port=None):
    """`usb_port` opens the cable's stream (SerialRadio's `open_port`); None means the Unix
    port, where settings["radio"] names the tty."""
    if settings.get("radio_kind") == "serial":
        import radio_serial

        if usb_port is None:
            usb_port = radio_serial.open_tty(settings["radio"])
        return radio_serial.SerialRadio(usb_port, adv)
    from radio_ble import BleRadio

    return BleRadio(adv)


def console_port():
    """An ESP32's USB cable: UART0 behind the board's USB bridge, shared with the console (the
    gateway skips what is not a SLIP packet). Ctrl-C is data here, not an interrupt."""
    import sys

    import micropython

    micropython.kbd_intr(-1)
    return sys.stdin.buffer, sys.stdout.buffer
