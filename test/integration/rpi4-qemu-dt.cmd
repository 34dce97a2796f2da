# Test harness only (never in a shipped image): run by boot.scr when p1 carries edge-test.scr,
# just before booti. QEMU's raspi4b models no HDMI, AVS monitor, DVP clock or their interrupt
# controller, and has the SD card where the Pi 4 has its Wi-Fi chip (mmc@7e300000): the stock
# kernel would wait on the missing parts, so the device tree it is handed says they are not there.
fdt addr ${ab_fdt}
fdt resize 0x1000
for ab_node in /soc/interrupt-controller@7ef00100 /soc/hdmi@7ef00700 /soc/i2c@7ef04500 /soc/hdmi@7ef05700 /soc/i2c@7ef09500 /soc/clock@7ef00000 /soc/avs-monitor@7d5d2000; do
  fdt set ${ab_node} status disabled
done
fdt rm /soc/mmc@7e300000 mmc-pwrseq
fdt rm /soc/mmc@7e300000/wifi@1
# The PL011 carries the Bluetooth chip on a Pi 4: its serdev child would take the UART's input
# away from the console, so keys typed there would never reach the shell.
fdt rm /soc/serial@7e201000/bluetooth
# The device's network under QEMU: a USB Ethernet adapter on the OTG port (DWC2), which the Pi 4
# runs as a USB device (dr_mode peripheral) and QEMU as a host. The firmware's power domain for
# it is not emulated.
fdt set /soc/usb@7e980000 dr_mode host
fdt rm /soc/usb@7e980000 power-domains
# Linux hangs once its console is QEMU's mini UART (ttyS1, where the Pi 4's GPIO 14/15 console
# is): under QEMU the kernel's console is the PL011 (ttyAMA0), the harness's first serial port.
setexpr bootargs sub console=ttyS1 console=ttyAMA0
echo "edge-test: kernel command line ${bootargs}"
echo "edge-test: device tree at ${ab_fdt} adapted to QEMU raspi4b"
