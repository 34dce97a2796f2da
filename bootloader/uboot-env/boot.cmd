# Edge A/B boot script: one script for the QEMU virt board and the Raspberry Pi 4;
# ${devtype} ${devnum} say which disk U-Boot found it on. Compiled into boot.scr.
#
# Slots: a = p2, b = p3. The A/B state is a U-Boot environment kept in two copies on
# p1, abstate1.env and abstate2.env (0x1000 bytes each, CRC32 + key=value pairs). The
# valid copy with the higher ab_seq is current; a save writes the other copy, so a power
# cut during a write leaves the current one whole. Numbers are hex, as setexpr writes them.
#   ab_good   the committed slot, booted normally
#   ab_try    a slot on trial (set by the update agent), unset when there is none
#   ab_tries  boot attempts made on ab_try
#   ab_limit  attempts allowed before going back to ab_good
#   ab_failed the last slot whose trial failed
#   ab_seq    save counter

setenv ab_disk "${devtype} ${devnum}"
setenv ab_addr ${kernel_addr_r}

# Find the current copy: valid CRC, highest ab_seq.
setenv ab_current
setenv ab_current_seq
for ab_copy in 1 2; do
  setenv ab_seq
  if fatload ${ab_disk}:1 ${ab_addr} abstate${ab_copy}.env && env import -c ${ab_addr} 0x1000 ab_seq; then
    if test -z "${ab_current}"; then
      setenv ab_current ${ab_copy}
      setenv ab_current_seq ${ab_seq}
    elif test 0x${ab_seq} -gt 0x${ab_current_seq}; then
      setenv ab_current ${ab_copy}
      setenv ab_current_seq ${ab_seq}
    fi
  fi
done

setenv ab_seq 0
setenv ab_good a
setenv ab_try
setenv ab_tries 0
setenv ab_limit 3
setenv ab_failed
if test -n "${ab_current}"; then
  fatload ${ab_disk}:1 ${ab_addr} abstate${ab_current}.env
  env import -c ${ab_addr} 0x1000 ab_seq ab_good ab_try ab_tries ab_limit ab_failed
  echo "edge-boot: A/B state from abstate${ab_current}.env: good ${ab_good}, try ${ab_try}, tries ${ab_tries} of ${ab_limit}"
else
  echo "edge-boot: no valid A/B state: booting slot a"
fi

# Save the state into the copy that is not current, then make that one current.
setenv ab_save 'setexpr ab_seq ${ab_seq} + 1; env export -c -s 0x1000 ${ab_addr} ab_seq ab_good ab_try ab_tries ab_limit ab_failed; if test "${ab_current}" = "1"; then setenv ab_current 2; else setenv ab_current 1; fi; fatwrite ${ab_disk}:1 ${ab_addr} abstate${ab_current}.env 0x1000'

setenv ab_slot ${ab_good}
setenv ab_trial 0
if test -n "${ab_try}"; then
  if test 0x${ab_tries} -lt 0x${ab_limit}; then
    setexpr ab_tries ${ab_tries} + 1
    # An attempt that cannot be counted is not made: the trial could otherwise loop forever.
    if run ab_save; then
      setenv ab_slot ${ab_try}
      setenv ab_trial 1
      echo "edge-boot: trying slot ${ab_try}, attempt ${ab_tries} of ${ab_limit}"
    else
      echo "edge-boot: cannot save the attempt count: booting slot ${ab_good}"
    fi
  else
    echo "edge-boot: slot ${ab_try} did not come up in ${ab_limit} attempts: back to slot ${ab_good}"
    setenv ab_failed ${ab_try}
    setenv ab_try
    setenv ab_tries 0
    run ab_save
  fi
fi

if test "${devtype}" = "virtio"; then
  setenv ab_console ttyAMA0
else
  setenv ab_console ttyS1,115200
fi
# The device tree: by default the one the firmware handed to U-Boot (${fdt_addr}). On the Pi
# it has been completed already (memory, MAC and serial numbers, config.txt's overlays and
# settings), which a DTB from the slot would lose; QEMU virt makes its own (${fdtcontroladdr}).
# A slot that carries /boot/dtbs/${fdtfile} (the Pi's U-Boot names its board's DTB there) is
# booted with that one instead: a release whose kernel needs a newer device tree says so.
if test -n "${fdt_addr}"; then
  setenv ab_board_fdt ${fdt_addr}
else
  setenv ab_board_fdt ${fdtcontroladdr}
fi
# Test harnesses only: an emulator lacks parts of the real board, so a test copy of the image
# carries edge-test.scr on p1 to edit ${ab_fdt} and ${bootargs} just before booti. Shipped
# images have none (test/integration/rpi4.test.ts checks).
setenv ab_pick_fdt 'setenv ab_fdt ${ab_board_fdt}; if test -n "${fdtfile}" && test -e ${ab_disk}:${ab_part} /boot/dtbs/${fdtfile}; then ext4load ${ab_disk}:${ab_part} ${fdt_addr_r} /boot/dtbs/${fdtfile} && setenv ab_fdt ${fdt_addr_r}; fi; if test -e ${ab_disk}:1 edge-test.scr; then echo "edge-boot: running the test harness script edge-test.scr"; fatload ${ab_disk}:1 ${scriptaddr} edge-test.scr && source ${scriptaddr}; fi'

# The kernel is gzip-compressed (Image.gz, a third of the bytes to read from an SD card):
# booti inflates it in a scratch area 64 MiB past kernel_addr_r, clear of the initrd and the
# device trees on both boards (Pi: 0x4080000; QEMU virt: 0x44400000), then moves it back.
if test -z "${kernel_comp_addr_r}"; then
  setexpr kernel_comp_addr_r ${kernel_addr_r} + 0x4000000
fi

# Boot the chosen slot. A trial slot that cannot even be loaded reboots: the attempt is
# counted already. A committed slot that cannot be loaded gives way to the other one.
setenv ab_boot_slot 'if test "${ab_slot}" = "b"; then setenv ab_part 3; else setenv ab_part 2; fi; part uuid ${ab_disk}:${ab_part} ab_partuuid; if ext4load ${ab_disk}:${ab_part} ${kernel_addr_r} /boot/Image.gz && setenv kernel_comp_size ${filesize} && ext4load ${ab_disk}:${ab_part} ${ramdisk_addr_r} /boot/initrd.img && setenv ab_initrd_size ${filesize}; then setenv bootargs "console=${ab_console} root=PARTUUID=${ab_partuuid} ro panic=5 edge.slot=${ab_slot} edge.trial=${ab_trial}"; run ab_pick_fdt; echo "edge-boot: booting slot ${ab_slot}"; booti ${kernel_addr_r} ${ramdisk_addr_r}:${ab_initrd_size} ${ab_fdt}; fi; echo "edge-boot: cannot boot slot ${ab_slot}"'
run ab_boot_slot
if test "${ab_trial}" = "1"; then
  reset
fi
if test "${ab_slot}" = "a"; then setenv ab_slot b; else setenv ab_slot a; fi
run ab_boot_slot
echo "edge-boot: no slot can boot"
