"""``neurospasm devices``: port and advertisement classification, and a scan on the virtual radio."""

from __future__ import annotations

from firmware_sim.ble import SimBleakScanner, VirtualBle, VirtualPeripheral
from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.commands.devices import classify_ble, classify_port, list_ble
from ingest.wire.protocol import BLE_SERVICE_UUID


def test_serial_ports_by_usb_id_and_name() -> None:
    dongle = classify_port("/dev/ttyUSB0", "FT231X USB UART", 0x0403, 0x6015)
    assert dongle.kind == "cyton" and "0403:6015" in dongle.why
    assert classify_port("/dev/ttyUSB1", "FT232R", 0x0403, 0x6001).kind == "cyton?"
    assert classify_port("/dev/rfcomm0").kind == "shimmer|bitalino"
    assert classify_port("/dev/ttyACM0", "neurospasm wearable", 0x1209, 0x7A51).kind == "neurospasm"
    assert classify_port("/dev/ttyS0", "n/a").kind is None


def test_ble_by_service_then_name() -> None:
    assert classify_ble("AA", "whatever", [BLE_SERVICE_UUID.upper()]).kind == "neurospasm"
    assert classify_ble("BB", "Polar H10 1A2B3C4D", []).kind == "polar-h10"
    assert classify_ble("CC", None, ["0000180f-0000-1000-8000-00805f9b34fb"]).kind is None


async def test_scan_on_the_virtual_radio() -> None:
    rec = synthesize(builtin_scenario("e2e_short"))
    dev = SimDevice(SignalSource.from_recording(rec), device_id="ns-1")
    async with VirtualBle() as ble:
        ble.add(VirtualPeripheral(dev, address="C0:FF:EE:00:00:07", name="NS-0007", rssi=-50))
        found, problem = await list_ble(0.3, backend=SimBleakScanner)
    assert problem is None
    assert [(d.where, d.kind, d.rssi) for d in found] == [("C0:FF:EE:00:00:07", "neurospasm", -50)]


async def test_scan_without_a_radio_says_why() -> None:
    found, problem = await list_ble(0.1, backend=SimBleakScanner)  # no VirtualBle active
    assert found == [] and problem
