package boot

import (
	"time"

	"github.com/bootlab/bootlab/provisioner/network"
)

func networkTimings() network.Config {
	return network.Config{Sleep: func(time.Duration) {}, LANAttempts: 1, IPv4Attempts: 1}
}
