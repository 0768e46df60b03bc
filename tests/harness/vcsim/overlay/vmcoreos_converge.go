package simulator

// vmcoreos: what vCenter refuses when a running VM is reconfigured, for the
// converge tests (a cpus or memory_mb change is applied to nodes one at a time).

import "github.com/vmware/govmomi/vim25/types"

// strictReconfigPowered refuses a new CPU count or memory size on a powered-on
// VM unless its hot-add is enabled, and any decrease, as vCenter does (hot-add
// only adds; there is no hot-remove of memory, and CPU hot-remove is off for
// the guests vmcoreos runs). The simulator would apply either at once.
func strictReconfigPowered(vm *VirtualMachine, spec *types.VirtualMachineConfigSpec) types.BaseMethodFault {
	if !Strict.Enabled || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		return nil
	}
	if err := strictCheckMemory(spec.MemoryMB); err != nil {
		return err // a bad value is named before the power state, as vCenter checks the spec first
	}
	hw := vm.Config.Hardware
	cpuHot := vm.Config.CpuHotAddEnabled != nil && *vm.Config.CpuHotAddEnabled
	memHot := vm.Config.MemoryHotAddEnabled != nil && *vm.Config.MemoryHotAddEnabled
	refused := &types.InvalidPowerState{
		RequestedState: types.VirtualMachinePowerStatePoweredOff,
		ExistingState:  vm.Runtime.PowerState,
	}
	if spec.NumCPUs != 0 && spec.NumCPUs != hw.NumCPU && (!cpuHot || spec.NumCPUs < hw.NumCPU) {
		return refused
	}
	if mb := int32(spec.MemoryMB); mb != 0 && mb != hw.MemoryMB && (!memHot || mb < hw.MemoryMB) {
		return refused
	}
	return nil
}
