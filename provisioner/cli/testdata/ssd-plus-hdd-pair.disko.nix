{
  disko.devices = builtins.fromJSON ''
    {
      "disk": {
        "sda": {
          "content": {
            "partitions": {
              "sda1": {
                "content": {
                  "extraArgs": [
                    "-n",
                    "EFI"
                  ],
                  "format": "vfat",
                  "mountOptions": [
                    "umask=0077"
                  ],
                  "mountpoint": "/boot",
                  "type": "filesystem"
                },
                "size": "1G",
                "type": "EF00"
              },
              "sda2": {
                "content": {
                  "type": "lvm_pv",
                  "vg": "main"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sda",
          "type": "disk"
        },
        "sdb": {
          "content": {
            "partitions": {
              "sdb1": {
                "content": {
                  "name": "md0",
                  "type": "mdraid"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sdb",
          "type": "disk"
        },
        "sdc": {
          "content": {
            "partitions": {
              "sdc1": {
                "content": {
                  "name": "md0",
                  "type": "mdraid"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sdc",
          "type": "disk"
        }
      },
      "lvm_vg": {
        "main": {
          "lvs": {
            "home": {
              "content": {
                "extraArgs": [
                  "-L",
                  "home"
                ],
                "format": "ext4",
                "mountOptions": [
                  "relatime"
                ],
                "mountpoint": "/home",
                "type": "filesystem"
              },
              "size": "16G"
            },
            "slash": {
              "content": {
                "extraArgs": [
                  "-L",
                  "slash"
                ],
                "format": "ext4",
                "mountOptions": [
                  "relatime"
                ],
                "mountpoint": "/",
                "type": "filesystem"
              },
              "size": "50G"
            }
          },
          "type": "lvm_vg"
        },
        "swap": {
          "lvs": {
            "swap": {
              "content": {
                "extraArgs": [
                  "--label",
                  "swap"
                ],
                "type": "swap"
              },
              "size": "32G"
            },
            "var_log": {
              "content": {
                "extraArgs": [
                  "-L",
                  "var_log"
                ],
                "format": "ext4",
                "mountOptions": [
                  "relatime"
                ],
                "mountpoint": "/var/log",
                "type": "filesystem"
              },
              "size": "4G"
            },
            "var_tmp": {
              "content": {
                "extraArgs": [
                  "-L",
                  "var_tmp"
                ],
                "format": "ext4",
                "mountOptions": [
                  "relatime"
                ],
                "mountpoint": "/var/tmp",
                "type": "filesystem"
              },
              "size": "32G"
            }
          },
          "type": "lvm_vg"
        }
      },
      "mdadm": {
        "md0": {
          "content": {
            "type": "lvm_pv",
            "vg": "swap"
          },
          "level": 1,
          "type": "mdadm"
        }
      }
    }
  '';
}
