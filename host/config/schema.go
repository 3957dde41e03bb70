package config

import "github.com/hashicorp/hcl/v2"

// The schema of a config file, as hcl.BodySchema values: hcl.Body.Content
// checks every body against one of them, so unknown attributes and blocks
// are errors (with a "did you mean" suggestion from hcl), and returns the
// blocks in file order, which is the start order of children.
//
// Every attribute is optional at this level: the loader reports a missing
// plugin itself, with a message that says what to write. Blocks that may
// appear once (health_check, backoff, mailbox, config) are checked for
// duplicates by the loader too.
//
// (gohcl is not used: it imports hclwrite, which needs a module this
// repository does not pin. Decoding by schema is what gohcl does underneath,
// and it keeps each attribute's range for messages.)

// Block type names.
const (
	blockApp         = "app"
	blockWorker      = "worker"
	blockSupervisor  = "supervisor"
	blockHealthCheck = "health_check"
	blockBackoff     = "backoff"
	blockMailbox     = "mailbox"
	blockConfig      = "config"
)

// schema builds a body schema of optional attributes and the given blocks.
func schema(attrs []string, blocks ...hcl.BlockHeaderSchema) *hcl.BodySchema {
	s := &hcl.BodySchema{Blocks: blocks}
	for _, a := range attrs {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a})
	}
	return s
}

// labelled is the header of a block type with one label, its name.
func labelled(typ string) hcl.BlockHeaderSchema {
	return hcl.BlockHeaderSchema{Type: typ, LabelNames: []string{"name"}}
}

var (
	// fileSchema is the top level: one app block.
	fileSchema = schema(nil, labelled(blockApp))

	// appSchema is the body of the app block: the root supervisor plus
	// app-wide settings.
	appSchema = schema(
		[]string{"preset", "log_level", "strategy", "max_restarts", "max_seconds", "metrics"},
		labelled(blockWorker), labelled(blockSupervisor))

	// supervisorSchema is the body of a supervisor block.
	supervisorSchema = schema(
		[]string{"strategy", "max_restarts", "max_seconds"},
		labelled(blockWorker), labelled(blockSupervisor))

	// workerSchema is the body of a worker block.
	workerSchema = schema(
		[]string{"plugin", "args", "env", "restart", "shutdown_timeout", "start_timeout",
			"priority", "max_memory", "pool", "sha256", "watch"},
		hcl.BlockHeaderSchema{Type: blockHealthCheck},
		hcl.BlockHeaderSchema{Type: blockBackoff},
		hcl.BlockHeaderSchema{Type: blockMailbox},
		hcl.BlockHeaderSchema{Type: blockConfig})

	healthCheckSchema = schema([]string{"interval", "timeout", "failures"})
	backoffSchema     = schema([]string{"min", "max", "jitter"})
	mailboxSchema     = schema([]string{"capacity", "priority_queues", "dead_letter", "default_ttl",
		"max_message_size", "max_delivery_attempts"})
	// The config block is free-form: hcl.Body.JustAttributes, no schema.
)
