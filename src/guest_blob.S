/* The guest's static init, embedded so that `nkvm setup` can write it into an initramfs. */
	.section .rodata
	.balign 16
	.global nkvm_guest_init_start, nkvm_guest_init_end
nkvm_guest_init_start:
	.incbin "guest/init"
nkvm_guest_init_end:
	.section .note.GNU-stack,"",@progbits
