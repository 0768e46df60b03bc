package simulator

// DeniedPrivileges are privilege IDs HasPrivilegeOnEntities answers "not granted"
// for, on every entity (vcsim's -deny-privilege): a user with a role that lacks them.
var DeniedPrivileges = map[string]bool{}
