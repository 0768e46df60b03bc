package simulator

// vmcoreos: what vCenter does at the end of a clone and the simulator does not
// (strict-virtual_machine-power.patch calls these hooks).
//   - spec.powerOn: vCenter powers the clone on in a task of its own after the
//     clone task has completed; a PowerOnVM_Task sent meanwhile fails with
//     InvalidPowerState once that power-on is done (openshift/machine-api-operator#1047).
//     -clone-power-on always powers every clone on so, whatever its spec says.
//   - diskMoveType createNewChildDiskBacking: a linked clone's disk is an
//     empty child whose parent is the source's disk; it takes no space.

import (
	"os"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// StrictPower is set by the vcsim main (-clone-power-on, -power-on-delay).
var StrictPower struct {
	CloneAlways bool
	Delay       time.Duration
}

// poweringOn: VMs whose power-on by vCenter itself is under way, each with a
// channel closed when it has ended.
var poweringOn sync.Map

func strictCloneFinish(ctx *Context, src, clone *VirtualMachine, req *types.CloneVM_Task) {
	if !Strict.Enabled {
		return
	}
	strictLinkDisks(src, clone, req)
	if req.Spec.Template || !(req.Spec.PowerOn || StrictPower.CloneAlways) {
		return
	}
	done := make(chan struct{})
	poweringOn.Store(clone.Self, done)
	runner := &powerVMTask{clone, types.VirtualMachinePowerStatePoweredOn, ctx}
	task := CreateTask(clone, "powerOn", runner.Run)
	strictNameTask(task, "PowerOnVM_Task", "VirtualMachine.powerOn")
	go func() {
		defer close(done)
		defer poweringOn.Delete(clone.Self)
		time.Sleep(StrictPower.Delay)
		if Map.Get(clone.Self) == nil {
			return // deleted meanwhile
		}
		Map.WithLock(clone, func() { task.Run() })
	}()
}

// strictPoweringOn: a PowerOnVM_Task while vCenter's own power-on runs gets a
// task that fails with InvalidPowerState when that one has ended.
func strictPoweringOn(vm *VirtualMachine) soap.HasFault {
	v, ok := poweringOn.Load(vm.Self)
	if !ok {
		return nil
	}
	task := CreateTask(vm, "powerOn", func(*Task) (types.AnyType, types.BaseMethodFault) {
		return nil, &types.InvalidPowerState{
			RequestedState: types.VirtualMachinePowerStatePoweredOn,
			ExistingState:  vm.Runtime.PowerState,
		}
	})
	strictNameTask(task, "PowerOnVM_Task", "VirtualMachine.powerOn")
	Map.Update(task, []types.PropertyChange{
		{Name: "info.startTime", Val: time.Now()},
		{Name: "info.state", Val: types.TaskInfoStateRunning},
	})
	go func() {
		<-v.(chan struct{})
		Map.WithLock(vm, func() { task.Run() })
	}()
	return &methods.PowerOnVM_TaskBody{Res: &types.PowerOnVM_TaskResponse{Returnval: task.Self}}
}

// strictLinkDisks: with createNewChildDiskBacking each disk of the clone is a
// child of the source's, empty and charged nothing.
func strictLinkDisks(src, clone *VirtualMachine, req *types.CloneVM_Task) {
	if req.Spec.Location.DiskMoveType != string(types.VirtualMachineRelocateDiskMoveOptionsCreateNewChildDiskBacking) ||
		req.Spec.Snapshot == nil {
		return
	}
	from, to := diskFiles(src), diskFiles(clone)
	for i := 0; i < len(from) && i < len(to); i++ {
		parent, ok := from[i].Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		child, ok2 := to[i].Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok || !ok2 {
			continue
		}
		shared := *parent
		shared.Parent = nil
		child.Parent = &shared
		abs, ds := absDiskPath(clone, child.FileName)
		if ds == nil {
			continue
		}
		_ = os.Truncate(abs, 0)
		if _, thin := thinCharged.Load(child.FileName); thin {
			chargeDatastore(ds, child.FileName, 0)
		} else {
			// Thick: charged its capacity when created; a child disk takes nothing yet.
			Map.WithLock(ds, func() {
				ds.Summary.FreeSpace += getDiskSize(to[i])
				ds.Info.GetDatastoreInfo().FreeSpace = ds.Summary.FreeSpace
			})
			thinCharged.Store(child.FileName, int64(0))
		}
	}
	refreshFileSizes(clone)
}
