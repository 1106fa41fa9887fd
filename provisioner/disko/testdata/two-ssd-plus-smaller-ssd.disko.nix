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
                  "name": "md0",
                  "type": "mdraid"
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
                  "extraArgs": [
                    "-n",
                    "EFI2"
                  ],
                  "format": "vfat",
                  "type": "filesystem"
                },
                "size": "1G",
                "type": "EF00"
              },
              "sdb2": {
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
                  "type": "lvm_pv",
                  "vg": "main_1"
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
            },
            "swap": {
              "content": {
                "extraArgs": [
                  "--label",
                  "swap"
                ],
                "type": "swap"
              },
              "size": "16G"
            }
          },
          "type": "lvm_vg"
        },
        "main_1": {
          "lvs": {},
          "type": "lvm_vg"
        }
      },
      "mdadm": {
        "md0": {
          "content": {
            "type": "lvm_pv",
            "vg": "main"
          },
          "level": 0,
          "type": "mdadm"
        }
      }
    }
  '';
}
